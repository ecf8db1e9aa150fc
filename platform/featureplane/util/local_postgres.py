"""A throwaway PostgreSQL server for the tests and `make team-demo`: ``initdb`` in a temporary directory,
``pg_ctl`` on a free port of 127.0.0.1, stopped by the postmaster's process id. Its cluster trusts every
local connection: it is for one machine's tests and demos, never for data that matters.

The server binaries come from PostgreSQL's own directory (``/usr/lib/postgresql/<version>/bin``) or the
PATH. ``initdb`` refuses to run as root, so as root the cluster is created and run as the ``postgres``
user (``make setup`` installs Debian's ``postgresql`` when it is missing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binaries() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (the newest version installed)."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


@dataclass
class LocalPostgres:
    """One running cluster; ``database()`` hands each test a fresh, empty database on it."""

    directory: Path
    port: int = field(default_factory=_free_port)
    user: str = "postgres"
    _as_postgres: bool = field(default=False, init=False)
    _pid: int | None = field(default=None, init=False)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        if self._as_postgres:
            command = ("runuser", "-u", "postgres", "--", *command)
        return subprocess.run(command, capture_output=True, text=True, check=False)

    def start(self, timeout: float = 60.0) -> LocalPostgres:
        binaries = server_binaries()
        if binaries is None:
            raise RuntimeError("PostgreSQL's server is not installed (make setup installs it)")
        self._as_postgres = os.geteuid() == 0
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        result = self._run(
            str(binaries / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8"
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr or result.stdout}")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        result = self._run(
            str(binaries / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        )
        if result.returncode != 0:
            log = (
                (self.directory / "server.log").read_text()
                if (self.directory / "server.log").exists()
                else ""
            )
            raise RuntimeError(f"pg_ctl start failed: {result.stderr or result.stdout}\n{log}")
        self._pid = int((self.data / "postmaster.pid").read_text().split()[0])
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not listen on port {self.port}") from None
                time.sleep(0.05)

    def database(self, name: str | None = None) -> str:
        """Create a new empty database and return its DSN."""
        import psycopg

        name = name or f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        """Stop the postmaster by its process id (a fast shutdown), and wait for it to exit."""
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
