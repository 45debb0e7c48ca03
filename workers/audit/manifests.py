"""Tamper evidence for the audit records: seal each tenant-day into a signed manifest, verify later.

    seal_day    list verdicts/dt=D/tenant=T/ and reviews/dt=D/tenant=T/ (a person's reviews, entered
                as `review:{scan_id}` so a scan's verdict and review are two entries), hash every record, Merkle root, link to the tenant's
                previous manifest (its date and the sha256 of its bytes), sign, write
                manifests/dt=D/tenant=T/manifest.json. Run daily for yesterday (cron / CronJob), after
                the last verdict of the day can land (scans near midnight finish a few seconds later).
    verify      per day: every record's signature (S3 metadata), the manifest's signature and root,
                and the records against the manifest:
                    missing      in the manifest, gone from S3 (deleted)
                    altered      in S3 with other bytes than were sealed (or a bad signature)
                    unexpected   in S3, not in the manifest (inserted after sealing)
                    unsigned     no signature in the metadata (written without a signing key)
                    unsealed     records, but no manifest for the day
                    chain        the previous manifest a manifest names is gone or was changed

What this proves and what it does not is in docs/AUDIT.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from workers.audit import signing
from workers.core.errors import ObjectNotFound, TenderscanError
from workers.core.keys import REVIEWS_PREFIX, manifest_s3_key, reviews_day_prefix, verdicts_day_prefix
from workers.core.storage import ObjectStore

MANIFEST_VERSION = 1
CHAIN_LOOKBACK_DAYS = 400  # how far back seal/verify look for a tenant's previous manifest
FETCH_THREADS = 16  # parallel GETs (S3 latency, not CPU, bounds these passes)
FETCH_CHUNK = 256  # keys in flight at most


class ManifestExists(TenderscanError):
    """The day is already sealed (a second seal would hide what changed since)."""


def days(start: str, end: str) -> list[str]:
    """Inclusive list of YYYY-MM-DD dates."""
    a, b = date.fromisoformat(start), date.fromisoformat(end)
    if b < a:
        raise ValueError(f"--to {end} is before --from {start}")
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def scan_id_of(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".json")


REVIEW_SUBJECT = "review:"  # a review record's entry in a manifest: "review:{scan_id}"


def subject_of(key: str) -> str:
    """A record's entry name in a manifest: the scan id for an audit record, review:{scan_id} for a review."""
    return (REVIEW_SUBJECT if key.startswith(REVIEWS_PREFIX) else "") + scan_id_of(key)


def tenants_of_day(objects: ObjectStore, day: str) -> list[str]:
    found = set()
    for prefix in (verdicts_day_prefix(day), reviews_day_prefix(day)):
        found |= {k[len(prefix):].split("/", 1)[0].removeprefix("tenant=") for k in objects.list(prefix)}
    return sorted(found)


def day_keys(objects: ObjectStore, day: str, tenant: str | None = None) -> list[str]:
    """The audit records (verdicts) of a day: what `audit pull` exports."""
    return [k for k in objects.list(verdicts_day_prefix(day, tenant)) if k.endswith(".json")]


def sealed_keys(objects: ObjectStore, day: str, tenant: str) -> list[str]:
    """What a day's manifest covers: its audit records and the reviews recorded that day."""
    reviews = [k for k in objects.list(reviews_day_prefix(day, tenant)) if k.endswith(".json")]
    return day_keys(objects, day, tenant) + reviews


def fetch(objects: ObjectStore, keys: list[str]) -> Iterator[tuple[str, bytes | None, dict[str, str]]]:
    """(key, bytes or None if it vanished, metadata), in the order of `keys`, fetched in parallel."""
    def one(key: str):
        try:
            obj = objects.get(key)
        except ObjectNotFound:
            return key, None, {}
        return key, obj.data, obj.metadata

    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        for i in range(0, len(keys), FETCH_CHUNK):  # bounded: never a million futures (and bodies) at once
            yield from pool.map(one, keys[i:i + FETCH_CHUNK])


def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def previous_manifest(objects: ObjectStore, day: str, tenant: str) -> tuple[str, bytes] | None:
    """(date, bytes) of the tenant's latest manifest before `day`, looking back CHAIN_LOOKBACK_DAYS."""
    d = date.fromisoformat(day)
    for back in range(1, CHAIN_LOOKBACK_DAYS + 1):
        prev = (d - timedelta(days=back)).isoformat()
        try:
            return prev, objects.get(manifest_s3_key(prev, tenant)).data
        except ObjectNotFound:
            continue
    return None


def seal_day(objects: ObjectStore, signer: signing.Signer, day: str, tenant: str, force: bool = False) -> dict:
    """Write and return the signed manifest of one tenant-day. ManifestExists unless `force`."""
    key = manifest_s3_key(day, tenant)
    if not force and objects.exists(key):
        raise ManifestExists(f"{key} exists; a day is sealed once")
    entries = [{"scan_id": subject_of(k), "sha256": signing.sha256_hex(data)}
               for k, data, _ in fetch(objects, sealed_keys(objects, day, tenant)) if data is not None]
    entries.sort(key=lambda e: e["scan_id"])
    prev = previous_manifest(objects, day, tenant)
    doc = {
        "v": MANIFEST_VERSION, "tenant": tenant, "date": day, "count": len(entries), "entries": entries,
        "sealed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "root": signing.merkle_root((e["scan_id"], e["sha256"]) for e in entries),
        "prev": {"date": prev[0], "sha256": signing.sha256_hex(prev[1])} if prev else None,
        "key_id": signer.key_id,
    }
    doc["signature"] = signer.sign(signing.manifest_message(_canonical(doc)))
    body = _canonical(doc)
    objects.put(key, body, content_type="application/json", metadata={signing.SHA256_META: signing.sha256_hex(body)})
    return doc


# --- verify -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    day: str
    kind: str  # missing | altered | unexpected | unsigned | bad_signature | unsealed | bad_manifest | chain
    subject: str  # a scan_id, or the manifest key
    detail: str = ""


@dataclass
class VerifyReport:
    tenant: str
    days: int = 0
    records: int = 0
    sealed_days: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.problems:
            out[p.kind] = out.get(p.kind, 0) + 1
        return out


def check_record(verifier: signing.Verifier, key: str, data: bytes, metadata: dict[str, str]) -> str | None:
    """None if the record's signature holds, else a problem kind (unsigned / bad_signature)."""
    sig, kid = metadata.get(signing.SIGNATURE_META), metadata.get(signing.KEY_ID_META)
    if not sig or not kid:
        return "unsigned"
    review = key.startswith(REVIEWS_PREFIX)  # the review console's keys count on review records only
    return None if verifier.verify(signing.record_message(key, data), sig, kid, review=review) else "bad_signature"


def check_manifest(verifier: signing.Verifier, doc: dict) -> str | None:
    """None if the manifest's signature and Merkle root hold, else what is wrong."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    if not verifier.verify(signing.manifest_message(_canonical(body)), doc.get("signature", ""), doc.get("key_id", "")):
        return "manifest signature does not verify (or unknown key)"
    entries = doc.get("entries", [])
    if signing.merkle_root((e["scan_id"], e["sha256"]) for e in entries) != doc.get("root"):
        return "Merkle root does not match the entries"
    if doc.get("count") != len(entries):
        return "count does not match the entries"
    return None


def verify_day(objects: ObjectStore, verifier: signing.Verifier, day: str, tenant: str, report: VerifyReport) -> None:
    problems = report.problems
    found: dict[str, str] = {}  # scan_id -> sha256 of what is in S3 now
    for key, data, meta in fetch(objects, sealed_keys(objects, day, tenant)):
        if data is None:
            continue
        scan_id = subject_of(key)
        found[scan_id] = signing.sha256_hex(data)
        kind = check_record(verifier, key, data, meta)
        if kind:
            problems.append(Problem(day, kind, scan_id))
    report.records += len(found)
    mkey = manifest_s3_key(day, tenant)
    try:
        raw = objects.get(mkey).data
    except ObjectNotFound:
        if found:
            problems.append(Problem(day, "unsealed", mkey, f"{len(found)} records, no manifest"))
        return
    report.sealed_days += 1
    try:
        doc = json.loads(raw)
        bad = check_manifest(verifier, doc)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        doc, bad = {}, f"manifest does not parse: {exc}"
    if bad or doc.get("tenant") != tenant or doc.get("date") != day:
        problems.append(Problem(day, "bad_manifest", mkey, bad or "manifest names another tenant or day"))
        return
    sealed = {e["scan_id"]: e["sha256"] for e in doc["entries"]}
    for scan_id in sorted(sealed.keys() - found.keys()):
        problems.append(Problem(day, "missing", scan_id, "sealed, no longer in S3"))
    for scan_id in sorted(sealed.keys() & found.keys()):
        if sealed[scan_id] != found[scan_id]:
            problems.append(Problem(day, "altered", scan_id, "bytes differ from the sealed sha256"))
    for scan_id in sorted(found.keys() - sealed.keys()):
        problems.append(Problem(day, "unexpected", scan_id, "in S3, not in the day's manifest"))
    if doc.get("prev"):
        prev = doc["prev"]
        try:
            prev_raw = objects.get(manifest_s3_key(prev["date"], tenant)).data
        except ObjectNotFound:
            problems.append(Problem(day, "chain", mkey, f"previous manifest {prev['date']} is gone"))
            return
        if signing.sha256_hex(prev_raw) != prev["sha256"]:
            problems.append(Problem(day, "chain", mkey, f"previous manifest {prev['date']} was changed"))


def verify_range(objects: ObjectStore, verifier: signing.Verifier, tenant: str, start: str, end: str) -> VerifyReport:
    report = VerifyReport(tenant)
    for day in days(start, end):
        report.days += 1
        verify_day(objects, verifier, day, tenant, report)
    return report


# --- bucket protection --------------------------------------------------------------------------
def protect_bucket(client, bucket: str, mode: str = "COMPLIANCE", retention_days: int = 2555) -> None:
    """Versioning + Object Lock default retention on the bucket (needs an admin identity).

    S3 refuses Object Lock on an unversioned bucket (SeaweedFS: InvalidBucketState), so versioning first.
    """
    from workers.core.storage import _translate

    with _translate(bucket):
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": retention_days}}})
