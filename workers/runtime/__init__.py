"""The worker process: one Celery worker judging scans (docs/ARCHITECTURE.md, "The data path").

Read in the order a scan travels: worker.py (the app and its start/stop hooks), context.py (what a
worker process holds, built once and handed to every task), tasks.py, pipeline.py, batching.py,
runner.py, decide.py, publish.py; then what keeps it honest: retrying.py, reconcile.py,
shutdown.py, health.py, supervisor.py."""
