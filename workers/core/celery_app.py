"""The Celery application, configured from Settings. Imported by both sides of the queue.

The producer calls `make_celery(settings).send_task(TASK_NAME, ...)`; the worker process loads
`workers.app`, which adds the task and the model hooks. This module must stay torch-free.

Why each setting (docs/ARCHITECTURE.md has the longer story):
    json only            a pickle message would run code chosen by whoever can write to Redis
    ignore results       verdicts live in our own store (VerdictStore), not in Celery's backend
    acks_late + reject   a message is acked only after its verdict is published; a worker that dies
      on worker lost     mid-scan leaves it to be redelivered (the verdict's SET NX makes that safe)
    prefetch 1           each task thread reserves one message; concurrency (2 x batch size) is what
                         sizes the batch, so one worker never hoards a backlog other workers could take
    visibility timeout   Redis redelivers an unacked message after this long; Settings.cross_check keeps
                         it above the hard time limit plus the batch window
"""

from __future__ import annotations

from celery import Celery

from workers.core import keys
from workers.core.settings import Settings


def celery_config(settings: Settings) -> dict:
    """The configuration as a plain dict (what `make_celery` applies; tests read it)."""
    return {
        "broker_url": settings.effective_broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        "task_default_queue": keys.QUEUE,
        "task_routes": {keys.TASK_NAME: {"queue": keys.QUEUE},
                        keys.MULTI_TASK_NAME: {"queue": keys.QUEUE}},
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.effective_concurrency,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def make_celery(settings: Settings, main: str = "tenderscan") -> Celery:
    app = Celery(main, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
