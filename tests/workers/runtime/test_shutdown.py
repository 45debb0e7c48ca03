"""workers/runtime/shutdown.py: the grace watchdog that bounds a warm shutdown, with fakes for Celery and kombu."""

from __future__ import annotations

from types import SimpleNamespace

from workers.runtime.shutdown import EXIT_GRACE_EXPIRED, GraceWatchdog, restore_unacked


def test_a_drain_that_ends_in_time_neither_requeues_nor_exits():
    calls = []
    dog = GraceWatchdog(5.0, restore=lambda: calls.append("restore") or 0, exit=calls.append)
    dog.arm()
    dog.disarm()
    dog.join(2)
    assert calls == [] and dog.restored is None


def test_past_the_grace_the_messages_in_hand_go_back_then_the_process_exits():
    calls = []
    dog = GraceWatchdog(0.05, restore=lambda: calls.append("restore") or 3, exit=calls.append)
    dog.arm()
    dog.join(2)
    assert calls == ["restore", EXIT_GRACE_EXPIRED] and dog.restored == 3


def test_it_exits_even_when_the_broker_cannot_take_the_messages_back():
    calls = []

    def restore():
        raise ConnectionError("broker down")

    dog = GraceWatchdog(0.05, restore=restore, exit=calls.append)
    dog.arm()
    dog.join(2)
    assert calls == [EXIT_GRACE_EXPIRED]


def test_arming_twice_starts_one_watchdog():
    calls = []
    dog = GraceWatchdog(0.05, restore=lambda: 0, exit=calls.append)
    dog.arm()
    dog.arm()
    dog.join(2)
    assert calls == [EXIT_GRACE_EXPIRED]


class FakeQoS:
    def __init__(self, tags):
        self._delivered = dict.fromkeys(tags)
        self.restored = []

    def restore_by_tag(self, tag):
        self.restored.append(tag)
        self._delivered.pop(tag, None)  # what an ack racing the walk would do: no error


def test_restore_unacked_hands_back_every_delivered_message_of_the_task_channel():
    qos = FakeQoS(["a", "b", "c"])
    consumer = SimpleNamespace(task_consumer=SimpleNamespace(channel=SimpleNamespace(qos=qos)))
    assert restore_unacked(consumer) == 3
    assert qos.restored == ["a", "b", "c"]
