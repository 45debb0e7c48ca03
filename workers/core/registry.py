"""The model registry: checkpoints, their evaluations and aliases in the models bucket.

Key layout (bucket `settings.models_bucket`; the functions that build these keys are in keys.py):

    models/{version}/model.pt           the checkpoint file, byte for byte
    models/{version}/evaluation.json    the evaluation it was published with
    models/{version}/meta.json          written last, so a version exists once this exists:
                                        version, name, sha256 (of model.pt), weights_sha256, size,
                                        published_at, gate (thresholds applied), summary (gated metrics)
    aliases/{alias}.json                {alias, version, promoted_at, previous} (+ by, reason, forced)

Versions are immutable: publishing an existing version is refused. Workers resolve
`TENDERSCAN_MODEL=registry:production` (or `registry:VERSION`) once at start with `resolve`,
which downloads into a local cache and verifies the file's sha256 against meta.json; the loader
then checks the weights' sha256 (`load_checkpoint(path, expected_sha256=meta["weights_sha256"])`).

Errors (all TenderscanError, so the CLI prints them as one line):
    RegistryError
    ├── ModelRejected       the evaluation misses the quality gate; `failures` lists each miss
    ├── ModelNotFound       no such version or alias
    ├── VersionExists       versions are immutable
    └── ModelCorrupt        downloaded bytes do not match the recorded sha256, or not a checkpoint
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from workers.core import keys
from workers.core.errors import ObjectNotFound, TenderscanError
from workers.core.storage import ObjectStore

REGISTRY_PREFIX = "registry:"  # TENDERSCAN_MODEL=registry:ALIAS_OR_VERSION
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RegistryError(TenderscanError):
    """Something about the model registry an operator must look at."""


class ModelRejected(RegistryError):
    def __init__(self, version: str, failures: list[str]) -> None:
        super().__init__(f"model {version} refused by the quality gate: " + "; ".join(failures))
        self.version = version
        self.failures = failures


class ModelNotFound(RegistryError):
    pass


class VersionExists(RegistryError):
    pass


class ModelCorrupt(RegistryError):
    pass


@dataclass(frozen=True)
class Gate:
    """Minimums / maximums an evaluation must meet to be published. None skips a check."""

    min_accuracy: float | None = 0.995  # default capture, genuine + medium/obvious counterfeits
    max_false_reject: float | None = 0.005  # among auto-decided genuine notes
    max_miss: float | None = 0.01  # among auto-decided counterfeits
    max_review: float | None = 0.03
    min_sign_recall: float | None = 0.97  # every sign, medium/obvious
    min_subtle_caught: float | None = 0.90  # subtle counterfeits not decided genuine
    min_harsh_accuracy: float | None = 0.97  # harsh capture, medium/obvious
    # the robustness suite (models/robustness.py): its per-cell targets, summarised by the evaluation as
    # summary.suite_targets_met of summary.suite_targets. Checked only when require_suite (promotion's
    # gate, PROMOTION_GATE): every target met, and the suite present. Publishing does not check it, so a
    # model short of some robustness targets can be published, compared, canaried and shadowed
    require_suite: bool = False

    def check(self, evaluation: dict) -> list[str]:
        """One sentence per missed threshold (or missing metric); empty when the gate passes."""
        reports = evaluation.get("test") if isinstance(evaluation.get("test"), dict) else {"default": evaluation}
        default, harsh = reports.get("default") or {}, reports.get("harsh")
        mo = default.get("medium_obvious") or {}
        failures: list[str] = []

        def need(label: str, value, op: str, limit: float | None) -> None:
            if limit is None:
                return
            if value is None:
                failures.append(f"{label} not in the evaluation (needed {op} {limit})")
            elif (op == ">=" and value < limit) or (op == "<=" and value > limit):
                failures.append(f"{label} {value:.4f} misses {op} {limit}")

        need("accuracy", mo.get("accuracy"), ">=", self.min_accuracy)
        need("false_reject_rate", mo.get("false_reject_rate"), "<=", self.max_false_reject)
        need("miss_rate", mo.get("miss_rate"), "<=", self.max_miss)
        need("review_rate", mo.get("review_rate"), "<=", self.max_review)
        recalls = mo.get("sign_recall") or {}
        if self.min_sign_recall is not None and not recalls:
            failures.append(f"sign_recall not in the evaluation (needed >= {self.min_sign_recall})")
        for sign, value in sorted(recalls.items()):
            need(f"sign_recall[{sign}]", value, ">=", self.min_sign_recall)
        subtle = (default.get("by_severity") or {}).get("subtle") or {}
        need("subtle caught_rate", subtle.get("caught_rate"), ">=", self.min_subtle_caught)
        need("harsh accuracy", ((harsh or {}).get("medium_obvious") or {}).get("accuracy"), ">=",
             self.min_harsh_accuracy)
        return failures + self._targets(evaluation)

    def _targets(self, evaluation: dict) -> list[str]:
        """The robustness suite's count; the unmet entries of `targets` name which (that list also holds
        targets no gate applies, such as the training's wall time, so it only explains)."""
        if not self.require_suite:
            return []
        summary = evaluation.get("summary") if isinstance(evaluation.get("summary"), dict) else {}
        met, total = summary.get("suite_targets_met"), summary.get("suite_targets")
        if total is None or met is None:
            return ["robustness suite (summary.suite_targets_met / suite_targets) not in the evaluation"]
        if met >= total:
            return []
        unmet = [str(t.get("target")) for t in evaluation.get("targets") or [] if isinstance(t, dict)
                 and not t.get("met", True)]
        return [f"robustness suite: {met} of {total} targets met" + (f" (unmet: {'; '.join(unmet)})" if unmet else "")]


PROMOTION_GATE = Gate(require_suite=True)  # `tenderscan model promote`: the standard and the robustness targets


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value or ""):
        raise RegistryError(f"{kind} {value!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return value


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _get_json(store: ObjectStore, key: str, missing: str) -> dict:
    try:
        return json.loads(store.get(key).data)
    except ObjectNotFound:
        raise ModelNotFound(missing) from None


def publish(store: ObjectStore, path: str | Path, version: str, evaluation: dict, gate: Gate | None = None) -> dict:
    """Gate, then upload checkpoint + evaluation + meta. Returns meta."""
    from models.checkpoint import CheckpointError, load_checkpoint

    _check_name("version", version)
    data = Path(path).read_bytes()
    try:
        ckpt = load_checkpoint(data)
    except CheckpointError as exc:
        raise ModelCorrupt(f"{path}: {exc}") from None
    gate = gate or Gate()
    failures = gate.check(evaluation)
    if failures:
        raise ModelRejected(version, failures)
    if store.exists(keys.model_meta_s3_key(version)):
        raise VersionExists(f"model version {version} already exists; versions are immutable")
    digest = _sha256(data)
    store.put(keys.model_s3_key(version), data, "application/octet-stream", {"sha256": digest})
    store.put(keys.evaluation_s3_key(version), json.dumps(evaluation).encode(), "application/json")
    default = evaluation.get("test", {}).get("default", evaluation) if isinstance(evaluation.get("test"), dict) \
        else evaluation
    meta = {"version": version, "name": ckpt.name, "sha256": digest, "weights_sha256": ckpt.weights_sha256,
            "size": len(data), "published_at": _now(), "gate": asdict(gate),
            "summary": {k: (default.get("medium_obvious") or {}).get(k)
                        for k in ("accuracy", "false_reject_rate", "miss_rate", "review_rate")}}
    store.put(keys.model_meta_s3_key(version), json.dumps(meta).encode(), "application/json")
    return meta


def meta(store: ObjectStore, version: str) -> dict:
    return _get_json(store, keys.model_meta_s3_key(_check_name("version", version)),
                     f"no model version {version} in bucket {store.bucket}")


def promote(store: ObjectStore, version: str, alias: str, **why: str | bool) -> dict:
    """Point `alias` at `version` (which must exist). Returns the alias record. `why` adds fields to the
    record (by, reason, forced): who moved it and why, for a rollback or a forced promotion."""
    _check_name("alias", alias)
    meta(store, version)
    key = keys.alias_s3_key(alias)
    previous = alias_version(store, alias)
    record = {"alias": alias, "version": version, "promoted_at": _now(), "previous": previous, **why}
    store.put(key, json.dumps(record).encode(), "application/json")
    return record


def alias_version(store: ObjectStore, alias: str) -> str | None:
    """The version an alias names now, or None when the alias is not set."""
    try:
        return json.loads(store.get(keys.alias_s3_key(alias)).data).get("version")
    except ObjectNotFound:
        return None


def evaluation(store: ObjectStore, version: str) -> dict:
    """The evaluation a version was published with."""
    return _get_json(store, keys.evaluation_s3_key(_check_name("version", version)),
                     f"no evaluation for model version {version} in bucket {store.bucket}")


def aliases(store: ObjectStore) -> dict[str, str]:
    out = {}
    for key in store.list(keys.ALIASES_PREFIX):
        if key.endswith(".json"):
            out[key[len(keys.ALIASES_PREFIX):-len(".json")]] = json.loads(store.get(key).data)["version"]
    return out


def list_models(store: ObjectStore) -> list[dict]:
    """Every published version's meta, oldest first, each with the aliases pointing at it."""
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases(store).items():
        by_version.setdefault(version, []).append(alias)
    rows = []
    for key in store.list(keys.MODELS_PREFIX):
        if key.endswith("/meta.json"):
            m = json.loads(store.get(key).data)
            rows.append({**m, "aliases": sorted(by_version.get(m["version"], []))})
    return sorted(rows, key=lambda m: (m["published_at"], m["version"]))


def resolve_version(store: ObjectStore, ref: str) -> str:
    """An alias or a version (optionally prefixed "registry:") -> a published version."""
    ref = ref[len(REGISTRY_PREFIX):] if ref.startswith(REGISTRY_PREFIX) else ref
    _check_name("model reference", ref)
    try:
        return json.loads(store.get(keys.alias_s3_key(ref)).data)["version"]
    except ObjectNotFound:
        pass
    if store.exists(keys.model_meta_s3_key(ref)):
        return ref
    raise ModelNotFound(f"no alias or version {ref!r} in bucket {store.bucket}")


def resolve(store: ObjectStore, ref: str, cache_dir: str | Path) -> Path:
    """Download (or reuse from cache) the checkpoint `ref` names; its sha256 is verified either way."""
    path, _ = resolve_with_meta(store, ref, cache_dir)
    return path


def resolve_with_meta(store: ObjectStore, ref: str, cache_dir: str | Path) -> tuple[Path, dict]:
    version = resolve_version(store, ref)
    m = meta(store, version)
    path = Path(cache_dir) / version / "model.pt"
    if path.is_file() and _sha256(path.read_bytes()) == m["sha256"]:
        return path, m
    data = store.get(keys.model_s3_key(version)).data
    if _sha256(data) != m["sha256"]:
        raise ModelCorrupt(f"model {version}: downloaded sha256 {_sha256(data)[:12]}... does not match the "
                           f"published {m['sha256'][:12]}...")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path, m
