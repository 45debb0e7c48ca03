"""What crosses the queue and what is kept: the message and verdict schemas, frozen dataclasses.

    ScanMessage        one scan, by reference (never image bytes); the Celery task's argument and the
                       scan's intent in S3
    MultiScanMessage   up to MAX_SCANS_PER_MESSAGE ScanMessages in one queue message (bulk submissions)
    Verdict            one per scan, written once; the same bytes in Redis and in the S3 audit record
                       (with ModelRef, InputRef, Timestamps inside)
    Review             a person's judgement of a scan (the review console); the verdict stays as it was,
                       the review is its own signed record beside it

Each has `encode` / `decode`, a version field (change a schema -> bump its version), and anything that
does not decode raises ContractError. Where each lives is in keys.py; the words its fields take
(statuses, decisions, reasons) in enums.py; its times in clock.py's one format.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from workers.core.enums import Decision, Reason, ReviewLabel, ReviewSource
from workers.core.errors import ContractError

# --- schema versions and limits -----------------------------------------------------------------
MESSAGE_VERSION = 1  # ScanMessage
MULTI_MESSAGE_VERSION = 1  # MultiScanMessage
VERDICT_VERSION = 1  # Verdict / the audit record
REVIEW_VERSION = 1  # Review / the review record
MAX_REVIEW_NOTE = 2000  # characters of a reviewer's note
MAX_SCANS_PER_MESSAGE = 256  # a MultiScanMessage carrying more is refused whole (bad_message for each)


# --- ids ----------------------------------------------------------------------------------------
_SCAN_ID = re.compile(r"^[0-9a-f]{32}$")
_SAFE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # store_id, terminal_id, tenant


def new_scan_id() -> str:
    return uuid.uuid4().hex


def is_scan_id(value: str) -> bool:
    return bool(_SCAN_ID.match(value))


def is_safe_id(value: str) -> bool:
    """store_id, terminal_id and tenant end up in S3 keys and logs: keep them boring."""
    return bool(_SAFE.match(value))


# --- webhooks (workers/webhooks/, docs/WEBHOOKS.md) ----------------------------------------------
WEBHOOK_EVENT_VERSION = 1  # WebhookEvent (the body a tenant's endpoint receives)
_MSG_ID = re.compile(r"^msg_[A-Za-z0-9_]{1,80}$")


def is_webhook_msg_id(value: str) -> bool:
    return bool(_MSG_ID.match(value))


@dataclass(frozen=True)
class WebhookEvent:
    """One event for a tenant's endpoints. `body()` is exactly what is POSTed and signed, built once
    at emit and stored, so every retry sends the same bytes under the same `webhook-id` (= `id`)."""

    id: str  # msg_...; the webhook-id header, the receiver's idempotency key
    tenant: str
    type: str  # enums.WebhookEvent
    timestamp: str  # clock format: when it happened
    data: dict[str, Any]  # scan.completed: the verdict as stored; scan.reviewed: the review console's

    def __post_init__(self) -> None:
        if not is_webhook_msg_id(self.id) or not is_safe_id(self.tenant):
            raise ContractError(f"bad webhook event id {self.id!r} or tenant {self.tenant!r}")

    def body(self) -> str:
        """The Standard Webhooks payload shape: type, timestamp, data (+ our schema version)."""
        return json.dumps({"type": self.type, "timestamp": self.timestamp, "data": self.data, "v": WEBHOOK_EVENT_VERSION},
                          separators=(",", ":"), sort_keys=True)


# --- decoding, and the queue message ------------------------------------------------------------
def decode_json(raw: str | bytes | dict, what: str) -> dict:
    """A JSON object (or the dict itself), or ContractError naming `what` did not decode."""
    if isinstance(raw, dict):
        return raw
    try:
        data = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise ContractError(f"{what} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{what} must be a JSON object")
    return data


@dataclass(frozen=True)
class ScanMessage:
    """What a Celery task carries: a reference to the image, never its bytes."""

    scan_id: str
    tenant: str
    store_id: str
    terminal_id: str
    image_key: str  # S3 key in settings.s3_bucket (keys.image_s3_key, or keys.upload_s3_key)
    sha256: str  # of the bytes accepted at the edge
    bytes: int
    submitted_at: str  # clock.utcnow() at acceptance
    deadline: str | None = None  # clock format; dequeued after it -> `expired`
    v: int = MESSAGE_VERSION

    def encode(self) -> dict[str, Any]:
        """A JSON-safe dict (Celery serializes task arguments with JSON only)."""
        return asdict(self)

    @classmethod
    def decode(cls, raw: str | bytes | dict) -> ScanMessage:
        data = decode_json(raw, "scan message")
        if data.get("v") != MESSAGE_VERSION:
            raise ContractError(f"scan message version {data.get('v')!r} is not {MESSAGE_VERSION}")
        try:
            msg = cls(**data)
        except TypeError as exc:
            raise ContractError(f"scan message fields: {exc}") from None
        if not is_scan_id(msg.scan_id) or not is_safe_id(msg.tenant):
            raise ContractError("scan message has a malformed scan_id or tenant")
        return msg


@dataclass(frozen=True)
class MultiScanMessage:
    """Several scans in one queue message, so Celery's per-message cost is paid once per K scans.

    Each scan keeps its own outcome: one that does not decode is rejected on its own (bad_message),
    its message-mates go on. The message is acked (late) only after every scan in it has a verdict.
    """

    scans: tuple[ScanMessage, ...]
    v: int = MULTI_MESSAGE_VERSION

    def encode(self) -> dict[str, Any]:
        return {"v": self.v, "scans": [m.encode() for m in self.scans]}

    @staticmethod
    def decode_parts(raw: str | bytes | dict) -> tuple[list[ScanMessage], list[tuple[Any, ContractError]]]:
        """(scans that decode, [(raw scan, its error)]). ContractError if the envelope itself is bad."""
        data = decode_json(raw, "multi-scan message")
        if data.get("v") != MULTI_MESSAGE_VERSION:
            raise ContractError(f"multi-scan message version {data.get('v')!r} is not {MULTI_MESSAGE_VERSION}")
        scans = data.get("scans")
        if not isinstance(scans, list) or not 1 <= len(scans) <= MAX_SCANS_PER_MESSAGE:
            raise ContractError(f"multi-scan message needs 1..{MAX_SCANS_PER_MESSAGE} scans")
        good: list[ScanMessage] = []
        bad: list[tuple[Any, ContractError]] = []
        for item in scans:
            try:
                good.append(ScanMessage.decode(item))
            except ContractError as exc:
                bad.append((item, exc))
        return good, bad


# --- the verdict (also the S3 audit record) -----------------------------------------------------
_SCALARS = (str, int, float, bool, type(None))  # JSON leaves, returned as they are
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # dataclass -> its field names (dataclasses.fields is slow)


def _plain(value: Any) -> Any:
    """dataclasses.asdict for what a verdict holds (dataclasses, dicts, lists of plain values), without
    its deep copies or its per-call field lookups: the same JSON, once per scan (tests compare the two)."""
    if type(value) in _SCALARS:
        return value
    names = _FIELD_NAMES.get(type(value))
    if names is None and is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES.setdefault(type(value), tuple(f.name for f in fields(value)))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# one encoder for every verdict: json.dumps builds a new JSONEncoder per call when given options
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    sha256: str  # of the checkpoint's weights, verified at load


@dataclass(frozen=True)
class InputRef:
    key: str
    sha256: str
    bytes: int
    width: int | None = None  # None when the image could not be decoded
    height: int | None = None


@dataclass(frozen=True)
class Timestamps:
    submitted: str
    dequeued: str | None = None
    inference_start: str | None = None
    inference_end: str | None = None
    completed: str | None = None


@dataclass(frozen=True)
class Verdict:
    """One per scan, written once. The same JSON goes to Redis and to S3."""

    scan_id: str
    tenant: str
    store_id: str
    terminal_id: str
    decision: str  # a Decision value (enums.py)
    input: InputRef
    timestamps: Timestamps
    reason: str | None = None  # a Reason value (enums.py) for rejected / expired / error
    detail: str | None = None  # human-readable note on the reason
    confidence: float | None = None  # probability of the decided class; None without inference
    p_counterfeit: float | None = None
    signs: dict[str, float] = field(default_factory=dict)  # tell-tale sign -> probability
    signs_detected: list[str] = field(default_factory=list)  # signs above their threshold
    denomination: str | None = None
    denomination_confidence: float | None = None
    model: ModelRef | None = None
    batch_id: str | None = None
    batch_size: int | None = None
    attempt: int = 1  # delivery attempt that produced this verdict
    schema_version: int = VERDICT_VERSION

    def encode(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the same bytes in Redis and in the S3 audit record."""
        return _CANONICAL_JSON.encode(_plain(self))

    @classmethod
    def decode(cls, raw: str | bytes | dict) -> Verdict:
        data = dict(decode_json(raw, "verdict"))
        if data.get("schema_version") != VERDICT_VERSION:
            raise ContractError(f"verdict schema_version {data.get('schema_version')!r} is not {VERDICT_VERSION}")
        try:
            data["input"] = InputRef(**data["input"])
            data["timestamps"] = Timestamps(**data["timestamps"])
            if data.get("model") is not None:
                data["model"] = ModelRef(**data["model"])
            verdict = cls(**data)
        except (KeyError, TypeError) as exc:
            raise ContractError(f"verdict fields: {exc}") from None
        if verdict.decision not in set(Decision):
            raise ContractError(f"verdict decision {verdict.decision!r} is unknown")
        return verdict


# --- a person's review (the review console; producer/review/) ----------------------------------
@dataclass(frozen=True)
class Review:
    """A reviewer's judgement of one scan, written once per review beside the (unchanged) verdict:
    in Redis (keys.review_key) and as a signed S3 record (keys.review_s3_key), the same bytes.

    `model_*` copy what the model answered, so a data set built from reviews (`tenderscan dataset
    from-reviews`) holds the human label and the model's own answer side by side."""

    scan_id: str
    tenant: str
    label: str  # a ReviewLabel value
    reviewer: str  # the reviewer's name from TENDERSCAN_REVIEWER_KEYS (name@scope)
    reviewed_at: str  # clock format; its date partitions the S3 record
    submitted_at: str  # the scan's; with tenant and scan_id it locates the image and the verdict
    image_key: str  # the scan's image in S3
    source: str  # a ReviewSource value: why the scan was queued
    model_decision: str  # the verdict's decision (a Decision value)
    model_confidence: float | None = None
    model_p_counterfeit: float | None = None
    model_version: str | None = None
    model_denomination: str | None = None  # the model's reading of the note (a data set's denomination label)
    verdict_sha256: str | None = None  # of the verdict JSON the reviewer saw (the audit record's bytes)
    signs_seen: list[str] = field(default_factory=list)  # tell-tale signs the reviewer saw
    note: str = ""
    v: int = REVIEW_VERSION

    @property
    def final_decision(self) -> str:
        """The decision that stands after the review (a Decision value)."""
        return Decision.REJECTED.value if self.label == ReviewLabel.NOT_A_BANKNOTE else self.label

    @property
    def final_reason(self) -> str | None:
        return Reason.NOT_A_BANKNOTE.value if self.label == ReviewLabel.NOT_A_BANKNOTE else None

    def encode(self) -> str:
        return _CANONICAL_JSON.encode(_plain(self))

    @classmethod
    def decode(cls, raw: str | bytes | dict) -> Review:
        data = decode_json(raw, "review")
        if data.get("v") != REVIEW_VERSION:
            raise ContractError(f"review version {data.get('v')!r} is not {REVIEW_VERSION}")
        try:
            review = cls(**data)
        except TypeError as exc:
            raise ContractError(f"review fields: {exc}") from None
        review.check()
        return review

    def check(self) -> None:
        """ContractError unless every field holds a value the contract allows."""
        if not is_scan_id(self.scan_id) or not is_safe_id(self.tenant):
            raise ContractError("review has a malformed scan_id or tenant")
        if self.label not in set(ReviewLabel) or self.source not in set(ReviewSource):
            raise ContractError(f"review label {self.label!r} or source {self.source!r} is unknown")
        if self.model_decision not in set(Decision):
            raise ContractError(f"review model_decision {self.model_decision!r} is unknown")
        if not isinstance(self.signs_seen, list) or not all(isinstance(s, str) and len(s) <= 64
                                                           for s in self.signs_seen):
            raise ContractError("review signs_seen must be a list of sign names")
        if not isinstance(self.note, str) or len(self.note) > MAX_REVIEW_NOTE:
            raise ContractError(f"review note must be text of at most {MAX_REVIEW_NOTE} characters")
