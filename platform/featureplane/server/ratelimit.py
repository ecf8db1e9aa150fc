"""Failed sign-ins counted per user and per client address over a sliding window.

Past the limit, sign-ins for that user (or from that address) are refused with 429 until the oldest
failure leaves the window, whether the password is right or not: guessing gets a handful of tries per
window. The counts live in the server's memory (one server process; a restart forgets them) and are
bounded, so a flood of made-up names cannot grow them without end.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class LoginLimiter:
    def __init__(
        self, per_user: int, per_address: int, window_seconds: float, max_tracked: int = 50_000
    ) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.window = window_seconds
        self.max_tracked = max_tracked
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, user: str, address: str) -> float | None:
        """Seconds until a sign-in may be tried again, or None if it may be tried now."""
        now = time.monotonic()
        waits = []
        with self._lock:
            for key, limit in (
                (("user", user.lower()), self.per_user),
                (("address", address), self.per_address),
            ):
                failures = self._recent(key, now)
                if len(failures) >= limit:
                    waits.append(failures[len(failures) - limit] + self.window - now)
        return max(waits) if waits else None

    def failed(self, user: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= self.max_tracked:
                for key in list(self._failures):
                    self._recent(key, now)
                if len(self._failures) >= self.max_tracked:
                    self._failures.clear()
            for key in (("user", user.lower()), ("address", address)):
                self._failures.setdefault(key, deque()).append(now)
