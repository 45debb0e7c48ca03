"""The one checkpoint format and its one loader.

A checkpoint is a `torch.save`d dict of plain values and tensors, readable with
`torch.load(weights_only=True)` (no pickled code runs on load):

    format            "tenderscan-checkpoint"
    format_version    1
    name, version     str: human name and registry version
    created_at        ISO-8601 UTC
    code_version      str: tenderscan package version + git commit when known
    generator_version str: version of models.synth that made the training data
    model_config      NetConfig.to_dict(): everything needed to rebuild the network
    state_dict        the weights
    weights_sha256    sha256 over the weights (see `weights_sha256`), verified on every load
    sign_names        list[str], order of the sign head's outputs
    denominations     list[str], order of the denomination head's outputs
    preprocess        PreprocessParams.to_dict()
    thresholds        Thresholds.to_dict(): the three-way decision and per-sign thresholds
    metrics           dict: validation metrics, train/inference throughput, train wall time
    data              dict: manifest sha256 of the training and validation data, counts, seeds
    ood               optional {means [C, F], precision [F, F]}: the out-of-distribution score's
                      statistics of the trunk's features (models.calibrate.OodModel)

`load_checkpoint` raises `CheckpointError` with a sentence a human can act on for a missing,
truncated, corrupt, tampered or foreign file.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

from models.calibrate import OodModel
from models.decision import Thresholds
from models.net import BillNet, NetConfig
from models.transforms import PreprocessParams

FORMAT = "tenderscan-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """The file is not a usable tenderscan checkpoint. The message says why."""


@dataclass
class Checkpoint:
    model: nn.Module
    name: str
    version: str
    weights_sha256: str
    sign_names: list[str]
    denominations: list[str]
    preprocess: PreprocessParams
    thresholds: Thresholds
    metrics: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    code_version: str = ""
    generator_version: str = ""
    created_at: str = ""
    config: NetConfig | None = None
    ood: OodModel | None = None


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, in sorted name order.

    Independent of how torch.save lays out the zip, so it survives re-saving.
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        t = t.reshape(-1)  # 0-dim tensors (BatchNorm's counters) cannot be viewed as bytes
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: BillNet, *, name: str, version: str, sign_names: list[str],
                    denominations: list[str], preprocess: PreprocessParams, thresholds: Thresholds,
                    metrics: dict | None = None, data: dict | None = None, code_version: str = "",
                    generator_version: str = "", ood: OodModel | None = None) -> str:
    """Write one checkpoint; returns its weights sha256."""
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    digest = weights_sha256(state)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": code_version,
        "generator_version": generator_version,
        "model_config": model.config.to_dict(),
        "state_dict": state,
        "weights_sha256": digest,
        "sign_names": list(sign_names),
        "denominations": list(denominations),
        "preprocess": preprocess.to_dict(),
        "thresholds": thresholds.to_dict(),
        "metrics": metrics or {},
        "data": data or {},
    }
    if ood is not None:
        payload["ood"] = ood.to_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return digest


def _read(source: str | Path | bytes, map_location) -> dict:
    label = "checkpoint bytes" if isinstance(source, bytes | bytearray) else str(source)
    if isinstance(source, bytes | bytearray):
        buf = io.BytesIO(source)
    else:
        p = Path(source)
        if not p.is_file():
            raise CheckpointError(f"checkpoint {label} does not exist")
        buf = io.BytesIO(p.read_bytes())
    try:
        payload = torch.load(buf, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zipfile, pickle, EOF and torch errors all mean "unreadable"
        # torch's own message suggests weights_only=False, which is never the fix here
        raise CheckpointError(f"{label} is not a readable checkpoint (truncated or corrupt?): "
                              f"{type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{label} is not a tenderscan checkpoint (no format={FORMAT!r} field)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{label} has format_version {payload.get('format_version')!r}; "
                              f"this code reads version {FORMAT_VERSION}")
    return payload


def load_checkpoint(source: str | Path | bytes, map_location: str | torch.device = "cpu",
                    expected_sha256: str | None = None) -> Checkpoint:
    """Read, verify and rebuild a checkpoint. The model comes back in eval mode on `map_location`.

    `expected_sha256`, when given, is the weights sha256 the caller trusts (for example from the
    registry's meta.json); a different one fails the load.
    """
    payload = _read(source, map_location)
    label = "checkpoint" if isinstance(source, bytes | bytearray) else str(source)
    try:
        state = payload["state_dict"]
        stored = payload["weights_sha256"]
        config = NetConfig.from_dict(payload["model_config"])
        preprocess = PreprocessParams.from_dict(payload["preprocess"])
        thresholds = Thresholds.from_dict(payload["thresholds"])
        sign_names, denominations = list(payload["sign_names"]), list(payload["denominations"])
        ood = OodModel.from_dict(payload["ood"]) if payload.get("ood") is not None else None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{label} lacks or garbles a required field: {exc!r}") from None
    actual = weights_sha256(state)
    if actual != stored:
        raise CheckpointError(f"{label}: weights sha256 {actual[:12]}... does not match the recorded "
                              f"{str(stored)[:12]}... (corrupt or tampered)")
    if expected_sha256 is not None and actual != expected_sha256:
        raise CheckpointError(f"{label}: weights sha256 {actual[:12]}... is not the expected "
                              f"{expected_sha256[:12]}...")
    if len(sign_names) != config.num_signs or len(denominations) != config.num_denominations:
        raise CheckpointError(f"{label}: {len(sign_names)} sign names / {len(denominations)} denominations "
                              f"do not fit the network's heads ({config.num_signs} / {config.num_denominations})")
    model = BillNet(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{label}: weights do not fit the recorded architecture: {str(exc)[:300]}") from None
    model.to(map_location).eval()
    return Checkpoint(
        model=model, name=str(payload.get("name", "")), version=str(payload.get("version", "")),
        weights_sha256=actual, sign_names=sign_names, denominations=denominations, preprocess=preprocess,
        thresholds=thresholds, metrics=dict(payload.get("metrics", {})), data=dict(payload.get("data", {})),
        code_version=str(payload.get("code_version", "")),
        generator_version=str(payload.get("generator_version", "")),
        created_at=str(payload.get("created_at", "")), config=config, ood=ood,
    )
