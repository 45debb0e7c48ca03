"""`celery -A workers.app worker`: the import path Celery users type. The app, its tasks and the
hooks that build each worker process's context live in workers/runtime/worker.py."""

from workers.runtime.worker import app

__all__ = ["app"]
