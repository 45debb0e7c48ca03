"""Audit records for the audit tests: a signing key, verdicts, and an in-memory bucket holding them."""

from __future__ import annotations

from workers.audit import manifests, signing
from workers.core.schemas import InputRef, ModelRef, Timestamps, Verdict, new_scan_id
from workers.core.storage import MemoryObjectStore
from workers.runtime.publish import write_audit

SEED = "11" * 32
OTHER_SEED = "22" * 32
SIGNER = signing.Signer(SEED)
VERIFIER = signing.Verifier([SIGNER.public_hex])


def verdict(day="2026-03-01", tenant="acme", store="s1", decision="genuine", model="v1", scan_id=None) -> Verdict:
    return Verdict(scan_id or new_scan_id(), tenant, store, "t1", decision,
                   InputRef(f"scans/dt={day}/tenant={tenant}/x.jpg", "ab" * 32, 10),
                   Timestamps(f"{day}T10:00:00.000000Z", completed=f"{day}T10:00:01.000000Z"),
                   confidence=0.9 if decision in ("genuine", "counterfeit", "review") else None,
                   model=ModelRef("tenderscan", model, "cd" * 32))


def world(n=4, day="2026-03-01", tenant="acme", signer=SIGNER) -> tuple[MemoryObjectStore, list[Verdict]]:
    objects = MemoryObjectStore()
    vs = [verdict(day, tenant) for _ in range(n)]
    for v in vs:
        write_audit(v, objects, signer=signer)
    return objects, vs


def kinds(rep: manifests.VerifyReport) -> list[tuple[str, str]]:
    return sorted((p.kind, p.subject) for p in rep.problems)
