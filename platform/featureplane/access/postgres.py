"""The access store in the registry's PostgreSQL database (``sql.py`` holds the logic, shared with
SQLite): the same tables and contract, created by the registry's migrations and reached through the
process's shared pool. Times are ``timestamptz``; rows a concurrent writer must wait for are locked
(``FOR SHARE`` on a principal a key or session is added to, ``FOR UPDATE`` on a user being disabled
or given a password); multi-statement reads run in one repeatable-read snapshot. The audit log is
append-only (a trigger refuses updates and deletes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from featureplane.access.sql import SQLAccessStore, precise
from featureplane.registry.postgres import iso, now, open_postgres_database

if TYPE_CHECKING:
    from featureplane.config import Config
    from featureplane.util.postgres import PostgresDatabase


class PostgresAccessStore(SQLAccessStore):
    FOR_SHARE = " FOR SHARE"
    FOR_UPDATE_USER = " FOR UPDATE OF p"

    def __init__(self, database: PostgresDatabase) -> None:
        self.db = database

    @classmethod
    def from_config(cls, config: Config) -> PostgresAccessStore:
        return cls(open_postgres_database(config))

    def close(self) -> None:
        self.db.close()

    def _read(self) -> Any:
        return self.db.connection()

    @contextmanager
    def _snapshot(self) -> Iterator[Any]:
        with self.db.transaction() as con:
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield con

    def _write(self) -> Any:
        return self.db.transaction()

    def _sql(self, statement: str) -> str:
        return _placeholders(statement)

    def _now(self) -> datetime:
        return now()

    def _now_precise(self) -> datetime:
        return now()

    def _stored_at(self, moment: datetime) -> datetime:
        return moment

    def _shown(self, value: Any) -> str | None:
        return iso(value)

    def _shown_precise(self, value: Any) -> str:
        return precise(value)

    def _passed(self, value: Any) -> bool:
        return value <= now()


@lru_cache(maxsize=256)
def _placeholders(statement: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (the shared statements hold no other ``?`` or ``%``)."""
    return statement.replace("?", "%s")
