"""The auditors' tools (docs/AUDIT.md): signing.py (Ed25519 signatures and the Merkle root; the worker
signs each audit record with it), manifests.py (seal a tenant-day, verify records against it) and
export.py (pull records to JSONL / CSV / Parquet, report). `tenderscan audit` is their command."""
