"""Small builders used across tests: tiny repositories over hand-made warehouse tables."""

from __future__ import annotations

from pathlib import Path

from conftest import Repo, write_repo

ENTITY_AND_SOURCE = """
    from featureplane import BatchSource, Entity, Field, String

    user = Entity(name="user", join_keys=[Field("user_id", String)])
    events = BatchSource(name="events", table="raw.events", timestamp_field="ts")
"""


def make_warehouse(repo: Repo, tables: dict[str, str]) -> None:
    """Create warehouse tables from SQL (``{"raw.events": "SELECT ..."}``)."""
    from featureplane.engines.duckdb import connect_warehouse

    path = repo.config().warehouse_path
    path.parent.mkdir(parents=True, exist_ok=True)
    con = connect_warehouse(path, read_only=False)
    try:
        for name, sql in tables.items():
            schema = name.split(".")[0]
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}").fetchall()
            con.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}").fetchall()
    finally:
        con.close()


def events_repo(
    root: Path, views: str, tables: dict[str, str] | None = None, extra_files: dict[str, str] | None = None
) -> Repo:
    """A repository with entity ``user``, source ``events`` (raw.events) and the given views file."""
    config = write_repo(root, {"base.py": ENTITY_AND_SOURCE, "views.py": views, **(extra_files or {})})
    repo = Repo(root, config)
    make_warehouse(
        repo,
        tables
        or {
            "raw.events": "SELECT * FROM (VALUES ('u1', TIMESTAMP '2024-01-01 10:00:00', 5.0), "
            "('u1', TIMESTAMP '2024-01-02 11:00:00', 7.0), ('u2', TIMESTAMP '2024-01-01 12:00:00', 1.5)) "
            "AS t(user_id, ts, amount)"
        },
    )
    return repo


def rows_sql(columns: dict[str, str], rows: list[dict]) -> str:
    """A SELECT of literal rows, typed by ``columns`` (name -> SQL type), for ``make_warehouse``."""
    from datetime import datetime

    def literal(value, sql_type: str) -> str:
        if value is None:
            return f"CAST(NULL AS {sql_type})"
        if isinstance(value, datetime):
            return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
        if isinstance(value, str):
            return "'" + value.replace("'", "''") + "'"
        return f"CAST({value!r} AS {sql_type})"

    if not rows:
        empty = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in columns.items())
        return f"SELECT {empty} WHERE FALSE"
    values = ", ".join("(" + ", ".join(literal(row[c], t) for c, t in columns.items()) + ")" for row in rows)
    return f"SELECT * FROM (VALUES {values}) AS t({', '.join(columns)})"
