"""One test helper: call a function on each item at once, in threads, as Celery's threads pool would."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence


def call_concurrently(fn: Callable, items: Sequence, timeout_s: float = 10.0) -> list:
    """fn(item) for every item, all started together; each slot holds the result or the exception."""
    out: dict[int, object] = {}

    def one(i: int, item) -> None:
        try:
            out[i] = fn(item)
        except Exception as exc:  # noqa: BLE001 - the caller inspects it
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i, item)) for i, item in enumerate(items)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    return [out[i] for i in range(len(items))]
