"""Rollout audit records: what happened to the models that decide scans, signed like a verdict's record.

    record_event(store, signer, action, version, **fields)   one JSON object in the models bucket,
                                       events/dt=D/{at}-{action}-{version}.json (keys.model_event_s3_key)
    read_events(store, day)            the day's records, oldest first, each with its signature checked

Actions: `promote_forced` (a promotion past the quality gate: `tenderscan model promote --force --by
NAME`, naming who and the gate's failures), `canary_rolled_back` (a worker moved the canary alias back to
production's version: the window's counts and the band it left), `canary_finished` (the canary's version
promoted to production). The signature is the record signature of workers/audit/signing.py (S3 key +
sha256 of the bytes, in the object's metadata), so `Verifier` checks it with the published keys, and a
record copied under another key no longer verifies. Without a signer the record is written unsigned,
as audit records are (the CLI refuses `--force` without a key: a forced promotion must be signed).
"""

from __future__ import annotations

import json

from workers.audit.signing import KEY_ID_META, SIGNATURE_META, Signer, Verifier, record_message
from workers.core import keys
from workers.core.clock import utcnow
from workers.core.storage import ObjectStore


def record_event(store: ObjectStore, signer: Signer | None, action: str, version: str, **fields) -> str:
    """Write one rollout audit record; returns its key."""
    at = utcnow()
    key = keys.model_event_s3_key(at, action, version)
    data = json.dumps({"action": action, "version": version, "at": at, **fields}, sort_keys=True).encode()
    metadata = signer.record_metadata(key, data) if signer else None
    store.put(key, data, content_type="application/json", metadata=metadata)
    return key


def read_events(store: ObjectStore, day: str, verifier: Verifier | None = None) -> list[dict]:
    """The day's rollout records (`day` YYYY-MM-DD), oldest first; with a verifier each gets `signed`:
    whether its signature checks out against a trusted key."""
    out = []
    for key in sorted(store.list(keys.model_events_day_prefix(day))):
        obj = store.get(key)
        event = json.loads(obj.data)
        if verifier is not None:
            meta = obj.metadata or {}
            event["signed"] = bool(meta.get(SIGNATURE_META)) and verifier.verify(
                record_message(key, obj.data), meta[SIGNATURE_META], meta.get(KEY_ID_META, ""))
        out.append({**event, "key": key})
    return out
