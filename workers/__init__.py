"""The queue side of tenderscan, in three floors (docs/ARCHITECTURE.md):

    core/      what both sides of the queue stand on: settings, the contract (keys, schemas, enums,
               clock), errors, the S3 and Redis stores, image limits, transport security, logging,
               telemetry, the model registry, the Celery configuration. Torch-free; the edge uses it.
    runtime/   the worker process: Celery app and tasks, its context, the per-scan pipeline, the
               batcher and model runner, decide, publish, retries, shutdown, health, supervisor,
               reconciler.
    audit/     the auditors' tools: Ed25519 signing, sealed day manifests and their verification,
               export (pull, report).

Imports run down only: runtime/ and audit/ use core/; runtime/ uses audit/ (to sign what it
publishes); core/ uses neither. `workers.app` and `workers.health` are the two public entry points
(`celery -A workers.app`, `python -m workers.health`).
"""
