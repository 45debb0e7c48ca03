"""Which reviewed scans are held out of training, so that a fine-tune can be measured on scans it never saw.

    in_holdout(ann, 0.2)          # True for about a fifth of the scans, the same fifth every time
    Holdout(0.2, "train").keeps   # the predicate `tenderscan train --extra-data --holdout 0.2` loads with
    Holdout(0.2, "holdout").keeps # the predicate `tenderscan evaluate --data DIR --holdout 0.2` loads with

The rule is a hash of the scan's id (`scan_id` in a `dataset from-reviews` folder; the image's `file` name
in a generated one), never a random draw or the position in the manifest: a scan stays on its side when
the data set grows with later reviews, and training and evaluation agree without sharing any state. A
share is a threshold on the hash, so the scans held out at 0.1 are also held out at 0.2.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SALT = b"tenderscan-holdout-v1:"  # changing it reshuffles every split: a held-out scan may then be trained on
SIDES = ("train", "holdout")


def holdout_key(ann: dict) -> str:
    """What identifies a scan across data sets: its scan id, else its image's file name."""
    return str(ann.get("scan_id") or ann["file"])


def hash_unit(key: str) -> float:
    """A key -> a number in [0, 1), uniform, the same on every machine and in every process."""
    return int.from_bytes(hashlib.sha256(SALT + key.encode()).digest()[:8], "big") / 2.0**64


def in_holdout(ann: dict, share: float) -> bool:
    return hash_unit(holdout_key(ann)) < share


@dataclass(frozen=True)
class Holdout:
    share: float  # the held-out share of the scans, 0..1
    side: str  # "train" (everything but the held-out share) or "holdout" (only it)

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0 or self.side not in SIDES:
            raise ValueError(f"holdout share must be within [0, 1] and side one of {SIDES}: {self}")

    def keeps(self, ann: dict) -> bool:
        return in_holdout(ann, self.share) == (self.side == "holdout")

    def to_dict(self) -> dict:
        return {"share": self.share, "side": self.side, "rule": "sha256(salt + scan_id or file) < share"}
