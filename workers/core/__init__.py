"""What both sides of the queue stand on (the edge in producer/ and the worker in workers/runtime/):
settings, the contract (keys.py, schemas.py, enums.py, clock.py), errors, the stores (storage.py for
S3, verdict_store.py for Redis), imaging limits, transport security, logging, telemetry, the model
registry and the Celery configuration. Never imports torch, the worker runtime or the audit tools."""
