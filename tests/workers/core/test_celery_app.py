"""workers/core/celery_app.py and `tenderscan worker`: the queue settings that make delivery safe, checked
against what Celery and kombu actually do with them. The tasks themselves: tests/workers/runtime/test_tasks.py."""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.serialization import dumps, loads, prepare_accept_content

from workers.core import keys
from workers.core.celery_app import make_celery
from workers.core.settings import Settings

SETTINGS = Settings().with_(broker_url="redis://127.0.0.1:6379/15", max_batch_size=16, visibility_timeout_s=900)


@pytest.fixture()
def app():
    return make_celery(SETTINGS)


def test_only_json_is_accepted_and_a_pickle_body_is_refused(app):
    assert app.conf.task_serializer == "json" and app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]
    accept = prepare_accept_content(app.conf.accept_content)  # what the worker's consumer applies
    body = pickle.dumps(([{"scan_id": "x"}], {}, {}))
    with pytest.raises(ContentDisallowed):
        loads(body, "application/x-python-serialize", "binary", accept=accept)
    ctype, enc, data = dumps(([{"scan_id": "x"}], {}, {}), serializer=app.conf.task_serializer)
    assert loads(data, ctype, enc, accept=accept) == [[{"scan_id": "x"}], {}, {}]


def test_delivery_is_acked_late_and_redelivered_if_the_worker_dies(app):
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.task_ignore_result is True


def test_prefetch_is_one_message_per_task_thread_sized_by_the_batch(app):
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.worker_concurrency == 32 == 2 * SETTINGS.max_batch_size


def test_visibility_timeout_and_time_limits_come_from_settings(app):
    assert app.conf.broker_transport_options["visibility_timeout"] == 900
    assert app.conf.task_soft_time_limit == SETTINGS.task_soft_time_limit_s
    assert app.conf.task_time_limit == SETTINGS.task_time_limit_s
    assert app.conf.broker_url == "redis://127.0.0.1:6379/15"


def test_the_task_is_routed_to_the_scans_queue(app):
    assert app.conf.task_default_queue == keys.QUEUE
    assert app.amqp.router.route({}, keys.TASK_NAME)["queue"].name == keys.QUEUE


def test_producer_side_import_stays_torch_free():
    code = ("import sys, workers.core.celery_app as c, workers.core.settings as s; c.make_celery(s.Settings()); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_tenderscan_worker_defaults_to_threads_sized_by_the_batch():
    from producer.cli.commands.worker import worker_argv

    args = argparse.Namespace(concurrency=None, pool="threads", loglevel=None, queues=None, hostname=None)
    assert worker_argv(args, SETTINGS) == ["worker", "--pool=threads", "--concurrency=32",
                                           f"--queues={keys.QUEUE}", "--loglevel=INFO"]
    solo = argparse.Namespace(concurrency=None, pool="solo", loglevel="DEBUG", queues="q1", hostname="w1@%h")
    assert worker_argv(solo, SETTINGS) == ["worker", "--pool=solo", "--concurrency=1", "--queues=q1",
                                           "--loglevel=DEBUG", "--hostname=w1@%h"]
