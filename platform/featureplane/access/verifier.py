"""Verifying API keys on the request path without a database read per request.

Answers are remembered for ``cache_seconds`` (the lookup service uses its registry refresh interval),
so a revoked key stops working within that time, as an apply takes effect within it. The cache lives
only in the server's memory (keyed by the key as received, like any request data) and is bounded so
that a flood of made-up keys cannot grow it.
"""

from __future__ import annotations

import threading
import time

from featureplane.access.base import AccessStore, Identity


class KeyVerifier:
    def __init__(self, store: AccessStore, cache_seconds: float = 5.0, max_entries: int = 10_000) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self.max_entries = max_entries
        self._cache: dict[str, tuple[Identity | None, float]] = {}
        self._lock = threading.Lock()

    def verify(self, key: str) -> Identity | None:
        """The key's identity, or None if it is unknown or revoked. Store errors propagate."""
        return self.verify_until(key)[0]

    def verify_until(self, key: str) -> tuple[Identity | None, float]:
        """The key's identity (or None) and until when (``time.monotonic()``) this answer may be
        reused: callers that remember it must forget it then, so a revocation takes effect in time."""
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit
        identity = self.store.authenticate(key)
        entry = (identity, now + self.cache_seconds)
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache = {d: e for d, e in self._cache.items() if e[1] > now}
                if len(self._cache) >= self.max_entries:
                    self._cache.clear()
            self._cache[key] = entry
        return entry
