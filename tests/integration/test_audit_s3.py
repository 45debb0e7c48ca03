"""The audit trail on a real SeaweedFS: per-role identities, Object Lock, and DuckDB over httpfs.

One private `weed mini` for the module, started with an S3 identities file (`-s3.config`) that gives
each role of docs/AUDIT.md its own key pair, scoped by bucket and prefix. What SeaweedFS 4.48 was
seen to enforce, and what not, is asserted here as observed (and written down in docs/AUDIT.md).
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from producer.dev.services import start_seaweedfs
from tests.workers.audit.records import verdict
from workers.audit import manifests, signing
from workers.audit.reviews import write_review
from workers.core import keys
from workers.core.errors import StorageError
from workers.core.schemas import Review
from workers.core.settings import Settings
from workers.core.storage import S3ObjectStore, s3_client
from workers.runtime.publish import audit_key, write_audit

pytestmark = pytest.mark.integration

BUCKET = "ts-audit"
LOCKED = "ts-audit-locked"
SIGNER = signing.Signer("33" * 32)
VERIFIER = signing.Verifier([SIGNER.public_hex])


def identities(bucket: str) -> dict:
    """The roles of docs/AUDIT.md as SeaweedFS identity actions (Write includes DELETE there).

    api       bucket-wide Write: SeaweedFS authorises a presigned POST (direct upload, signed with the
              api's key) against the bucket, not the key (measured: a prefix grant answers AccessDenied);
              bucket-wide Read: HeadBucket (/readyz) needs it, and the api reads scans/ (intents),
              verdicts/ (polls Redis forgot), tenants/ (the registry) and uploads/ (the HEAD re-check);
              List on tenants/ only (the registry refresh)
    worker    scans/ and uploads/ GET, scans/ LIST (reconciler), verdicts/ PUT + GET/HEAD + LIST (reconciler)
    reviews/  the api writes them (the review console, within its bucket-wide Write); the sealer and the
              auditor read and list them beside verdicts/ (a day manifest covers the day's reviews)
    operator  tenants/ only: `tenderscan tenant` reads, lists and writes tenant records
    """
    def who(name: str, actions: list[str]) -> dict:
        return {"name": name, "credentials": [{"accessKey": f"{name}-key", "secretKey": f"{name}-secret"}],
                "actions": actions}

    b = bucket
    return {"identities": [
        who("admin", ["Admin", "Read", "Write", "List", "Tagging"]),
        who("api", [f"Write:{b}", f"Read:{b}", f"List:{b}/tenants/*"]),
        who("worker", [f"Read:{b}/scans/*", f"List:{b}/scans/*", f"Read:{b}/uploads/*", f"Write:{b}/verdicts/*",
                       f"Read:{b}/verdicts/*", f"List:{b}/verdicts/*"]),
        who("operator", [f"Read:{b}/tenants/*", f"List:{b}/tenants/*", f"Write:{b}/tenants/*"]),
        who("sealer", [f"Read:{b}/verdicts/*", f"List:{b}/verdicts/*", f"Read:{b}/manifests/*",
                       f"Write:{b}/manifests/*", f"Read:{b}/reviews/*", f"List:{b}/reviews/*"]),
        who("auditor", [f"Read:{b}/verdicts/*", f"List:{b}/verdicts/*", f"Read:{b}/manifests/*",
                        f"List:{b}/manifests/*", f"Read:{b}/reviews/*", f"List:{b}/reviews/*"]),
    ]}


@pytest.fixture(scope="module")
def weed(tmp_path_factory):
    root = tmp_path_factory.mktemp("weed-audit")
    config = root / "s3.json"
    config.write_text(json.dumps(identities(BUCKET)))
    svc = start_seaweedfs(root / "data", None, None, [], root / "logs", extra_args=(f"-s3.config={config}",),
                          name="weed-audit")
    try:
        admin = s3_client(as_role(svc, "admin"))
        deadline = time.monotonic() + 30
        while True:
            try:
                admin.create_bucket(Bucket=BUCKET)
                admin.create_bucket(Bucket=LOCKED)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS never took a bucket:\n{svc.log_tail()}") from None
                time.sleep(0.2)
        yield svc
    finally:
        svc.stop()


def as_role(svc, role: str, bucket: str = BUCKET) -> Settings:
    return Settings().with_(s3_endpoint_url=svc.extra["endpoint"], s3_access_key=f"{role}-key",
                            s3_secret_key=f"{role}-secret", s3_bucket=bucket)


def store(svc, role: str, bucket: str = BUCKET) -> S3ObjectStore:
    return S3ObjectStore.from_settings(as_role(svc, role, bucket))


def device_post(objects: S3ObjectStore, key: str) -> None:
    """What a POS device does with a grant this role signed (producer/uploads.py): POST the bytes."""
    import httpx

    grant = objects.presigned_post(key, "image/jpeg", 1, 1024, 60)
    resp = httpx.post(grant.url, data=grant.fields, files={"file": ("scan", b"\xff\xd8\xff jpeg", "image/jpeg")})
    if resp.status_code >= 300:
        code = resp.text.split("<Code>", 1)[-1].split("</Code>", 1)[0] if "<Code>" in resp.text else resp.status_code
        raise StorageError(f"S3 {code} on {key}")


def allowed(fn) -> bool:
    try:
        result = fn()
        if hasattr(result, "__next__"):
            list(result)
    except StorageError as exc:
        assert "AccessDenied" in str(exc) or "S3 403 " in str(exc), exc  # a HEAD's 403 has no body
        return False
    return True


# --- roles --------------------------------------------------------------------------------------
def test_each_role_can_do_exactly_its_job(weed):
    admin = store(weed, "admin")
    v = verdict("2026-04-01")
    scan_key, vkey, mkey = "scans/dt=2026-04-01/tenant=acme/x.jpg", audit_key(v), "manifests/dt=2026-04-01/tenant=acme/manifest.json"
    tkey, ukey = "tenants/acme.json", "uploads/tenant=acme/u1"
    rkey = keys.review_s3_key("acme", v.scan_id, "2026-04-01T12:00:00.000000Z")
    for key in (scan_key, vkey, mkey, tkey, ukey, rkey):
        admin.put(key, b"{}")
    expect = {  # role -> {operation: allowed?}
        "api": {"put scan": True, "get scan": True, "delete new scan": True, "get verdict": True, "ping": True,
                "list verdicts": False, "list scans": False, "list uploads": False, "get tenant": True,
                "list tenants": True, "post upload": True, "head upload": True,
                # not wanted, not expressible: the bucket-wide Write a presigned POST needs covers every key
                "put tenant": True, "put verdict": True, "post upload to tenants": True,
                "put review": True, "delete new review": True},
        "worker": {"get scan": True, "put scan": False, "list scans": True, "put verdict": True,
                   "delete new verdict": True, "get verdict": True, "list verdicts": True, "put manifest": False,
                   "get upload": True, "head upload": True, "put upload": False, "post upload": False,
                   "get tenant": False, "put tenant": False, "list tenants": False, "ping": False,  # Write includes DELETE
                   "put review": False, "list reviews": False},
        "operator": {"get tenant": True, "list tenants": True, "put tenant": True, "get scan": False,
                     "get verdict": False, "put scan": False, "get upload": False},
        "sealer": {"list verdicts": True, "get verdict": True, "put verdict": False, "put manifest": True,
                   "get scan": False, "get tenant": False, "list reviews": True, "get review": True,
                   "put review": False},
        "auditor": {"list verdicts": True, "get verdict": True, "get manifest": True, "list manifests": True,
                    "put verdict": False, "delete verdict": False, "put manifest": False,
                    "delete manifest": False, "get scan": False, "list scans": False, "get tenant": False,
                    "list tenants": False, "put tenant": False, "get upload": False, "post upload": False,
                    "list reviews": True, "get review": True, "put review": False, "delete review": False},
    }
    for role, ops in expect.items():
        s = store(weed, role)
        calls = {
            "put scan": lambda s=s: s.put("scans/dt=2026-04-01/tenant=acme/y.jpg", b"y"),
            "delete new scan": lambda s=s: s.delete("scans/dt=2026-04-01/tenant=acme/y.jpg"),
            "get scan": lambda s=s: s.get(scan_key),
            "list scans": lambda s=s: s.list("scans/"),
            "get verdict": lambda s=s: s.get(vkey),
            "put verdict": lambda s=s: s.put(vkey.replace(".json", "-new.json"), b"{}"),
            "delete verdict": lambda s=s: s.delete(vkey),
            "delete new verdict": lambda s=s: s.delete(vkey.replace(".json", "-new.json")),
            "list verdicts": lambda s=s: s.list("verdicts/"),
            "get manifest": lambda s=s: s.get(mkey),
            "put manifest": lambda s=s: s.put(mkey.replace("acme", "other"), b"{}"),
            "delete manifest": lambda s=s: s.delete(mkey),
            "list manifests": lambda s=s: s.list("manifests/"),
            "get tenant": lambda s=s: s.get(tkey),
            "list tenants": lambda s=s: s.list("tenants/"),
            "put tenant": lambda s=s: s.put("tenants/globex.json", b"{}"),
            "delete tenant": lambda s=s: s.delete(tkey),
            "get upload": lambda s=s: s.get(ukey),
            "head upload": lambda s=s: s.stat(ukey),
            "put upload": lambda s=s: s.put("uploads/tenant=acme/u2", b"x"),
            "list uploads": lambda s=s: s.list("uploads/"),
            "post upload": lambda s=s: device_post(s, "uploads/tenant=acme/u3"),
            "post upload to tenants": lambda s=s: device_post(s, "tenants/evil.json"),
            "ping": lambda s=s: s.ping(),  # HeadBucket: the api's /readyz
            "get review": lambda s=s: s.get(rkey),
            "put review": lambda s=s: s.put(rkey.replace(".json", "-new.json"), b"{}"),
            "delete new review": lambda s=s: s.delete(rkey.replace(".json", "-new.json")),
            "delete review": lambda s=s: s.delete(rkey),
            "list reviews": lambda s=s: s.list("reviews/"),
        }
        got = {op: allowed(calls[op]) for op in ops}
        assert got == ops, role
    assert admin.get(tkey).data == b"{}" and admin.get(vkey).data == b"{}"  # the refused writes changed nothing
    assert admin.exists("uploads/tenant=acme/u3") and admin.get("tenants/evil.json").data.startswith(b"\xff\xd8")
    assert admin.get(vkey).data == b"{}" and admin.exists(mkey)  # the refused deletes changed nothing


def test_worker_signs_sealer_seals_auditor_verifies_with_read_only_keys(weed):
    worker, sealer, auditor = store(weed, "worker"), store(weed, "sealer"), store(weed, "auditor")
    vs = [verdict("2026-04-02") for _ in range(3)]
    for v in vs:
        write_audit(v, worker, signer=SIGNER)
    review = Review(scan_id=vs[0].scan_id, tenant="acme", label="genuine", reviewer="ann@acme",
                    reviewed_at="2026-04-02T15:00:00.000000Z", submitted_at=vs[0].timestamps.submitted,
                    image_key=vs[0].input.key, source="review", model_decision=vs[0].decision)
    write_review(review, store(weed, "api"), SIGNER)  # the review console runs in the api
    manifests.seal_day(sealer, SIGNER, "2026-04-02", "acme")
    rep = manifests.verify_range(auditor, VERIFIER, "acme", "2026-04-02", "2026-04-02")
    assert rep.ok and rep.records == 4
    # a worker key (it can write verdicts) is enough to alter a record, and verify sees it
    worker.put(audit_key(vs[0]), vs[0].encode().encode().replace(b"genuine", b"counterfeit"))
    rep = manifests.verify_range(auditor, VERIFIER, "acme", "2026-04-02", "2026-04-02")
    assert sorted(p.kind for p in rep.problems) == ["altered", "unsigned"]


# --- DuckDB over httpfs, with the auditor's read-only keys --------------------------------------
def test_duckdb_reads_the_partitioned_records_over_httpfs(weed):
    duckdb = pytest.importorskip("duckdb")
    from duckdb_extensions import import_extension

    worker = store(weed, "worker")
    plan = [("2026-05-01", "acme", "genuine"), ("2026-05-01", "acme", "review"), ("2026-05-01", "globex", "genuine"),
            ("2026-05-02", "acme", "counterfeit")]
    for day, tenant, decision in plan:
        write_audit(verdict(day, tenant, decision=decision), worker, signer=SIGNER)
    manifests.seal_day(store(weed, "sealer"), SIGNER, "2026-05-01", "acme")  # manifests/ must not leak into the query

    con = duckdb.connect()
    import_extension("httpfs")
    con.execute("LOAD httpfs")
    con.execute(f"CREATE SECRET auditor (TYPE s3, KEY_ID 'auditor-key', SECRET 'auditor-secret', "
                f"ENDPOINT '{weed.extra['endpoint'].removeprefix('http://')}', URL_STYLE 'path', USE_SSL false, "
                f"REGION 'us-east-1')")
    query = (f"SELECT tenant, decision, count(*) AS n, any_value(model.version) AS model_version "
             f"FROM read_json_auto('s3://{BUCKET}/verdicts/dt=*/tenant=*/*.json', hive_partitioning = true) "
             f"WHERE dt BETWEEN DATE '2026-05-01' AND DATE '2026-05-02' GROUP BY ALL ORDER BY ALL")
    rows = con.execute(query).fetchall()
    assert rows == [("acme", "counterfeit", 1, "v1"), ("acme", "genuine", 1, "v1"), ("acme", "review", 1, "v1"),
                    ("globex", "genuine", 1, "v1")]
    con.close()


# --- Object Lock ----------------------------------------------------------------------------------
def test_object_lock_keeps_every_sealed_version(weed):
    admin_client = s3_client(as_role(weed, "admin", LOCKED))
    manifests.protect_bucket(admin_client, LOCKED, "COMPLIANCE", 1)
    objects = store(weed, "admin", LOCKED)
    v = verdict("2026-06-01")
    write_audit(v, objects, signer=SIGNER)
    key = audit_key(v)
    original = admin_client.head_object(Bucket=LOCKED, Key=key)
    assert original["ObjectLockMode"] == "COMPLIANCE"
    v1 = original["VersionId"]

    # As on AWS, a lock protects versions, not keys: an overwrite is a new version, and a plain DELETE
    # only adds a delete marker. The locked version stays readable by its id.
    objects.put(key, b'{"forged":true}')
    assert objects.get(key).data == b'{"forged":true}'
    admin_client.delete_object(Bucket=LOCKED, Key=key)
    assert not objects.exists(key)
    assert admin_client.get_object(Bucket=LOCKED, Key=key, VersionId=v1)["Body"].read() == v.encode().encode()

    def refused(**kwargs) -> str:
        with pytest.raises(Exception) as info:
            admin_client.delete_object(Bucket=LOCKED, Key=key, VersionId=v1, **kwargs)
        return info.value.response["Error"]["Code"]

    # Deleting the version itself is refused under COMPLIANCE, even for the admin and with the bypass header,
    # and the retention cannot be shortened, nor the mode weakened, nor versioning suspended.
    assert refused() == "AccessDenied"
    assert refused(BypassGovernanceRetention=True) == "AccessDenied"
    soon = datetime.now(UTC) + timedelta(seconds=5)
    for mode in ("COMPLIANCE", "GOVERNANCE"):
        with pytest.raises(Exception, match="AccessDenied"):
            admin_client.put_object_retention(Bucket=LOCKED, Key=key, VersionId=v1,
                                              Retention={"Mode": mode, "RetainUntilDate": soon})
    with pytest.raises(Exception, match="InvalidBucketState"):
        admin_client.put_bucket_versioning(Bucket=LOCKED, VersioningConfiguration={"Status": "Suspended"})

    # GOVERNANCE: refused without the bypass header, allowed with it (an Admin identity holds that right).
    g = admin_client.put_object(Bucket=LOCKED, Key="verdicts/g.json", Body=b"g", ObjectLockMode="GOVERNANCE",
                                ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1))["VersionId"]
    with pytest.raises(Exception, match="AccessDenied"):
        admin_client.delete_object(Bucket=LOCKED, Key="verdicts/g.json", VersionId=g)
    admin_client.delete_object(Bucket=LOCKED, Key="verdicts/g.json", VersionId=g, BypassGovernanceRetention=True)

    # Not enforced: the admin may drop the default retention rule; later objects are then unlocked,
    # while the versions already locked keep their lock. The bucket itself cannot go while it holds objects.
    admin_client.put_object_lock_configuration(Bucket=LOCKED, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    later = admin_client.put_object(Bucket=LOCKED, Key="verdicts/later.json", Body=b"l")["VersionId"]
    assert "ObjectLockMode" not in admin_client.head_object(Bucket=LOCKED, Key="verdicts/later.json", VersionId=later)
    assert refused() == "AccessDenied"
    with pytest.raises(Exception, match="BucketNotEmpty"):
        admin_client.delete_bucket(Bucket=LOCKED)


def test_object_lock_is_not_enforced_below_the_s3_gateway(weed):
    """SeaweedFS enforces Object Lock in its S3 gateway only: the filer's HTTP API (no auth by
    default) deletes a locked version outright. Keep the filer, master and volume ports unreachable;
    the signatures and the manifest chain still show the loss (`missing`)."""
    admin_client = s3_client(as_role(weed, "admin", LOCKED))
    manifests.protect_bucket(admin_client, LOCKED, "COMPLIANCE", 1)
    objects = store(weed, "admin", LOCKED)
    v = verdict("2026-06-02")
    write_audit(v, objects, signer=SIGNER)
    manifests.seal_day(objects, SIGNER, "2026-06-02", "acme")
    key = audit_key(v)
    v1 = admin_client.head_object(Bucket=LOCKED, Key=key)["VersionId"]

    for path in (f"/buckets/{LOCKED}/{key}.versions?recursive=true", f"/buckets/{LOCKED}/{key}?recursive=true"):
        with urllib.request.urlopen(urllib.request.Request(weed.extra["filer"] + path, method="DELETE")) as resp:
            assert resp.status == 204
    with pytest.raises(Exception, match="NoSuchVersion"):
        admin_client.get_object(Bucket=LOCKED, Key=key, VersionId=v1)
    rep = manifests.verify_range(objects, VERIFIER, "acme", "2026-06-02", "2026-06-02")
    assert [(p.kind, p.subject) for p in rep.problems] == [("missing", v.scan_id)]


# --- the CLI, end to end ------------------------------------------------------------------------
def test_cli_seal_verify_pull_report(weed, monkeypatch, tmp_path, capsys):
    from producer.cli import main

    worker = store(weed, "worker")
    vs = [verdict("2026-07-01", store=s, decision=d) for s, d in [("s1", "genuine"), ("s2", "review")]]
    for v in vs:
        write_audit(v, worker, signer=SIGNER)

    def as_env(role: str) -> None:
        monkeypatch.setenv("TENDERSCAN_S3_ENDPOINT_URL", weed.extra["endpoint"])
        monkeypatch.setenv("TENDERSCAN_S3_BUCKET", BUCKET)
        monkeypatch.setenv("TENDERSCAN_S3_ACCESS_KEY", f"{role}-key")
        monkeypatch.setenv("TENDERSCAN_S3_SECRET_KEY", f"{role}-secret")

    as_env("sealer")
    monkeypatch.setenv("TENDERSCAN_AUDIT_SIGNING_KEY", SIGNER.seed_hex)
    assert main(["audit", "seal", "--date", "2026-07-01"]) == 0
    assert "acme: sealed 2 records" in capsys.readouterr().out

    as_env("auditor")  # the auditor has no signing key, only the published public key
    monkeypatch.delenv("TENDERSCAN_AUDIT_SIGNING_KEY")
    monkeypatch.setenv("TENDERSCAN_AUDIT_PUBLIC_KEYS", SIGNER.public_hex)
    span = ["--tenant", "acme", "--from", "2026-07-01", "--to", "2026-07-01"]
    assert main(["audit", "verify", *span]) == 0
    assert "1 sealed, 2 records: no problems" in capsys.readouterr().out
    out = tmp_path / "acme.csv"
    assert main(["audit", "pull", *span, "--decision", "review", "--out", str(out)]) == 0
    assert out.read_text().count("\n") == 2  # header + one row
    png = tmp_path / "r.png"
    capsys.readouterr()
    assert main(["audit", "report", *span, "--png", str(png), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["total"] == 2 and rep["review_rate"] == 0.5 and png.stat().st_size > 1000

    store(weed, "admin").delete(audit_key(vs[0]))
    assert main(["audit", "verify", *span]) == 1
    assert f"missing       {vs[0].scan_id}" in capsys.readouterr().out
