"""When a failed delivery is tried again: exponential backoff with full jitter, inside a retry window.

    attempt n (1 = the first try failed) waits uniform(0, min(cap, base * 2**(n-1)))
    a retry that would fall more than `window_s` after the first attempt is not scheduled: given up

Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter") spreads the retries of many
events that failed together (one receiver's outage) instead of bringing them back in waves. Pure: the
random draw is a parameter, so tests pin it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from workers.core.settings import Settings


@dataclass(frozen=True)
class Backoff:
    base_s: float = 5.0
    cap_s: float = 3600.0
    window_s: float = 24 * 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        return cls(settings.webhook_backoff_base_s, settings.webhook_backoff_cap_s, settings.webhook_retry_window_s)

    def ceiling(self, attempt: int) -> float:
        """The longest wait after the `attempt`-th failed try."""
        return min(self.cap_s, self.base_s * 2 ** min(max(attempt, 1) - 1, 62))

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        return rand() * self.ceiling(attempt)

    def next_due(self, attempt: int, first_at: float, now: float,
                 rand: Callable[[], float] = random.random) -> float | None:
        """When to try again (unix s), or None: the window since `first_at` is spent."""
        due = now + self.delay(attempt, rand)
        return due if due - first_at <= self.window_s else None
