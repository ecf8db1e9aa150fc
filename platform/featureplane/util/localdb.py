"""SQLite files shared by threads: one connection per thread, WAL mode, the schema created once.

Standard library only (the lookup service uses it).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from featureplane.errors import storage_error


class ThreadLocalSQLite:
    def __init__(
        self, path: str | Path, schema: str, *, timeout: float = 60, pragmas: Sequence[str] = ()
    ) -> None:
        self.path = Path(path)
        self.schema = schema
        self.timeout = timeout
        self.pragmas = tuple(pragmas)
        self._local = threading.local()
        self._ready = False
        self._init_lock = threading.Lock()

    def connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                con = self._open()
            except (OSError, sqlite3.Error) as exc:
                raise storage_error(self.path, exc) from exc
            self._local.con = con
        return con

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        for pragma in self.pragmas:
            con.execute(f"PRAGMA {pragma}")
        if not self._ready:
            with self._init_lock:
                con.execute("PRAGMA journal_mode = WAL")
                con.executescript(self.schema)
                self._ready = True
        return con

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on success, rolled back on any error."""
        con = self.connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close this thread's connection."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
