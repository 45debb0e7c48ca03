"""When each verdict lands, seen from the bench process, and the statistics the report needs.

`VerdictWatcher` psubscribes to `ts:done:*` (the channel `VerdictStore.save_verdict` publishes on
in the same Lua script that SET NXes the verdict) and records time.monotonic() per scan id. Arrival
and completion are then on one clock, in one process.
"""

from __future__ import annotations

import math
import threading
import time

from workers.core import keys


class VerdictWatcher:
    def __init__(self, redis_url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.done: dict[str, float] = {}
        self._stop = threading.Event()
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(keys.DONE_CHANNEL_PATTERN)
        self._thread = threading.Thread(target=self._loop, name="bench-watcher", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        prefix = len(keys.done_channel(""))
        while not self._stop.is_set():
            msg = self._pubsub.get_message(timeout=0.2)
            while msg is not None:
                scan_id = msg["channel"][prefix:].decode()
                self.done.setdefault(scan_id, time.monotonic())
                msg = self._pubsub.get_message(timeout=0)

    def wait_for(self, scan_ids, timeout: float) -> bool:
        """True when every id has a verdict; False at the timeout."""
        ids = list(scan_ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(i in self.done for i in ids):
                return True
            time.sleep(0.05)
        return all(i in self.done for i in ids)

    def times(self, scan_ids) -> list[float]:
        return sorted(self.done[i] for i in scan_ids if i in self.done)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._pubsub.close()
        self.client.close()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rate(times: list[float]) -> float:
    """Sustained completions per second between the first and the last completion."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def latency_summary(latencies_s: list[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in latencies_s]
    return {f"p{q}_ms": None if (v := percentile(ms, q)) is None else round(v, 1) for q in (50, 95, 99)}
