"""The PostgreSQL schema of the registry and the access store, as an ordered list of migrations.

Each ``NNNN_name.sql`` file beside this module is one migration; ``schema_version`` records those a
database has. ``upgrade`` applies the missing ones in one transaction under a transaction-scoped
advisory lock, so processes starting together (a server, the Dagster code location, a CLI) do not race:
the first upgrades, the others wait and then find nothing to do. A migration is never edited once
released; a change to the schema is a new file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from featureplane.util.postgres import PostgresError, first_line, is_unavailable

if TYPE_CHECKING:
    import psycopg

# The advisory lock's key: any constant of featureplane's own (pg_advisory_xact_lock takes a bigint).
LOCK_KEY = 0x66706C616E650001
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaError(PostgresError):
    """The database's schema cannot be brought to what this featureplane needs."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    """Every migration, in order (numbered 1, 2, 3, ... without gaps)."""
    found = []
    for path in sorted(Path(__file__).parent.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise SchemaError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    for number, migration in enumerate(found, start=1):
        if migration.version != number:
            raise SchemaError(f"migration {migration.version:04d} is out of order (expected {number:04d})")
    return tuple(found)


def latest_version() -> int:
    return migrations()[-1].version


def schema_version(con: psycopg.Connection) -> int:
    """The newest migration the database has (0 for an empty database)."""
    if con.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]


def upgrade(con: psycopg.Connection, target: int | None = None) -> int:
    """Apply the migrations the database lacks, up to ``target`` (default: the newest), all in one
    transaction. Returns the schema version. A database newer than this featureplane is refused.

    A database that is already current is only read (no lock, no DDL), so a role that may only read
    the tables (a lookup service's) can open it."""
    import psycopg

    newest = latest_version()
    target = newest if target is None else target
    current = schema_version(con)
    if current <= newest and current >= target:
        return current
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = schema_version(con)  # again, under the lock: another process may have upgraded it
        if current > newest:
            raise SchemaError(
                f"the registry's PostgreSQL schema is at version {current}, newer than this featureplane "
                f"knows (version {newest}): upgrade featureplane"
            )
        for migration in migrations():
            if current < migration.version <= target:
                try:
                    con.execute(migration.sql.encode())
                except psycopg.Error as exc:
                    if is_unavailable(exc):
                        raise
                    raise SchemaError(
                        f"the registry's PostgreSQL schema migration {migration.version:04d}_{migration.name} "
                        f"failed: {first_line(exc)}"
                    ) from None
                con.execute(
                    "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                current = migration.version
    return current
