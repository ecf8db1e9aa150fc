"""PostgreSQL connections for the registry and the access store: one pool per process and database.

``open_database`` connects once (so a wrong password or an unreachable server is one clear error at
once, naming the setting), lets the caller prepare the schema on that connection, then shares a
connection pool (psycopg_pool) among every store of the process that uses the same database. Each
store holds a ``PostgresDatabase`` handle; the pool closes when the last handle does.

The password comes from the environment variable named by ``password_env``, never from the file, and
nothing here puts it in a message: errors and logs show the DSN without it (``display_dsn``).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from featureplane.errors import FeatureplaneError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

log = logging.getLogger("featureplane")

_KEY_VALUE_PASSWORD = re.compile(r"(?:^|\s)password\s*=", re.IGNORECASE)
# SQLSTATE classes that mean the server is gone, not that a statement failed: connection exceptions
# (08), an administrator's or a crash's shutdown (57P01-57P03).
_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03")


class PostgresError(FeatureplaneError):
    """The PostgreSQL settings cannot work (a password in the file, a variable not set, ...)."""


class DatabaseUnavailable(PostgresError):
    """PostgreSQL cannot be reached, refused the login, or went away during a call."""


class PostgresSettings(Protocol):
    dsn: str
    password_env: str | None
    pool_min_size: int
    pool_max_size: int
    connect_timeout_seconds: float


def dsn_has_password(dsn: str) -> bool:
    """Whether a libpq DSN (URL or ``key=value`` form) carries a password."""
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
        except ValueError:
            return False
        return parts.password is not None or "password=" in parts.query.lower()
    return bool(_KEY_VALUE_PASSWORD.search(dsn))


def display_dsn(dsn: str) -> str:
    """The DSN as messages show it: host, port, database and user, never a password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "(an unparsable DSN)"
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname', '')}"


def conninfo(settings: PostgresSettings, where: str, environ: Mapping[str, str] | None = None) -> str:
    """The connection string to use: the DSN with the password from ``password_env``."""
    from psycopg.conninfo import make_conninfo

    environ = os.environ if environ is None else environ
    if dsn_has_password(settings.dsn):
        raise PostgresError(
            f"{where}: registry.dsn must not contain the password: name an environment variable "
            "holding it with registry.password_env"
        )
    extra: dict[str, Any] = {"connect_timeout": max(2, math.ceil(settings.connect_timeout_seconds))}
    if settings.password_env:
        password = environ.get(settings.password_env)
        if password is None:
            raise PostgresError(
                f"{where}: registry.password_env: environment variable {settings.password_env} is not set "
                "(it holds the password for registry.dsn)"
            )
        extra["password"] = password
    try:
        return make_conninfo(settings.dsn, **extra)
    except Exception as exc:
        raise PostgresError(
            f"{where}: registry.dsn is not a valid PostgreSQL DSN: {first_line(exc)}"
        ) from None


def first_line(exc: BaseException) -> str:
    """A database error's first line (libpq adds hints and context on the next ones)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be used at all (versus a failed statement)."""
    import psycopg
    from psycopg_pool import PoolTimeout

    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _UNAVAILABLE_STATES


@dataclass
class _SharedPool:
    pool: ConnectionPool
    display: str
    handles: int = 0


_pools: dict[tuple[int, str], _SharedPool] = {}
_pools_lock = threading.Lock()


class PostgresDatabase:
    """One store's handle on the process's pool for a database."""

    def __init__(self, key: tuple[int, str], shared: _SharedPool, where: str) -> None:
        self._key = key
        self._shared = shared
        self.where = where
        self._closed = False

    @property
    def display(self) -> str:
        return self._shared.display

    def unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"{self.where}: registry: PostgreSQL at {self.display} is unavailable: {first_line(exc)}"
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in autocommit mode: each statement commits unless inside
        ``con.transaction()`` (use ``transaction()`` for a block that commits or rolls back whole).

        Database errors become one line naming the database (DatabaseUnavailable when it cannot be
        used, PostgresError when it refused a statement, e.g. a privilege an administrator revoked)."""
        import psycopg

        if self._closed:
            raise DatabaseUnavailable(f"{self.where}: registry: this PostgreSQL store was closed")
        try:
            with self._shared.pool.connection() as con:
                yield con
        except Exception as exc:
            if is_unavailable(exc):
                raise self.unavailable(exc) from exc
            if isinstance(exc, psycopg.Error):
                raise PostgresError(
                    f"{self.where}: registry: PostgreSQL at {self.display} refused a statement: "
                    f"{first_line(exc)}"
                ) from exc
            raise

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A connection inside one transaction: committed on success, rolled back on any error."""
        with self.connection() as con, con.transaction():
            yield con

    def close(self) -> None:
        """Release this handle; the pool closes with the process's last handle on it."""
        if self._closed:
            return
        self._closed = True
        with _pools_lock:
            self._shared.handles -= 1
            if self._shared.handles > 0 or _pools.get(self._key) is not self._shared:
                return
            del _pools[self._key]
        self._shared.pool.close()


def open_database(
    settings: PostgresSettings, where: str, prepare: Callable[[psycopg.Connection], None]
) -> PostgresDatabase:
    """A handle on this process's pool for the database ``settings`` names, creating the pool (after
    one direct connection that runs ``prepare``, e.g. the schema migrations) on first use."""
    import psycopg
    from psycopg_pool import ConnectionPool

    info = conninfo(settings, where)
    if settings.pool_max_size < settings.pool_min_size:
        raise PostgresError(
            f"{where}: registry.pool_max_size ({settings.pool_max_size}) is below registry.pool_min_size "
            f"({settings.pool_min_size})"
        )
    key = (os.getpid(), info)  # a forked child makes its own pool: connections do not survive fork
    with _pools_lock:
        shared = _pools.get(key)
        if shared is None:
            display = display_dsn(settings.dsn)
            try:
                with psycopg.connect(info, autocommit=True) as con:
                    prepare(con)
            except PostgresError as exc:
                raise type(exc)(f"{where}: {exc}") from None
            except psycopg.Error as exc:
                if not is_unavailable(exc):
                    raise PostgresError(
                        f"{where}: registry: PostgreSQL at {display} refused to prepare the schema: "
                        f"{first_line(exc)}"
                    ) from None
                reason = first_line(exc)
                if "password" in reason and settings.password_env:
                    reason += (
                        f" (check the password in ${settings.password_env}, named by registry.password_env)"
                    )
                raise DatabaseUnavailable(
                    f"{where}: registry.dsn: cannot connect to PostgreSQL at {display}: {reason}"
                ) from None
            pool = ConnectionPool(
                info,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                kwargs={"autocommit": True},
                check=ConnectionPool.check_connection,
                timeout=max(settings.connect_timeout_seconds, 0.1),
                name=f"featureplane registry {display}",
                open=True,
            )
            shared = _pools[key] = _SharedPool(pool, display)
            log.debug("opened a connection pool for PostgreSQL at %s", display)
        shared.handles += 1
    return PostgresDatabase(key, shared, where)


@atexit.register
def _close_pools() -> None:
    with _pools_lock:
        pools = [shared.pool for (pid, _), shared in _pools.items() if pid == os.getpid()]
        _pools.clear()
    for pool in pools:
        pool.close()
