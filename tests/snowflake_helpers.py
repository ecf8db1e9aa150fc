"""Feature repositories on the Snowflake path: configs for the local stand-in and source data copied
from a DuckDB warehouse, so one dataset runs on both engines."""

from __future__ import annotations

import textwrap

from conftest import SNOWFLAKE_PASSWORD_ENV, Repo, SnowflakeStandIn


def snowflake_yaml(server: SnowflakeStandIn, database: str, *, method: str = "window") -> str:
    """featureplane.yaml for the Snowflake engine and offline store on the stand-in (online: SQLite).
    The password comes from the environment, as it would in production."""
    return textwrap.dedent(
        f"""\
        project: test
        data_dir: .featureplane
        registry: {{type: sqlite, path: .featureplane/registry.db}}
        engine:
          type: snowflake
          account: featureplane-test
          user: featureplane
          password: ${{{SNOWFLAKE_PASSWORD_ENV}}}
          role: FEATUREPLANE
          warehouse: TRANSFORMING
          database: {database}
          schema: PUBLIC
          host: 127.0.0.1
          port: {server.port}
          protocol: http
          connect_args: {{network_timeout: 20, login_timeout: 20}}
        offline_store:
          type: snowflake
          schema: FEATURES
          point_in_time_join: {method}
        online_store: {{type: sqlite, path: .featureplane/online.db}}
        serving: {{registry_refresh_seconds: 0.5}}
        """
    )


def use_snowflake(repo: Repo, server: SnowflakeStandIn, *, method: str = "window") -> str:
    """Point ``repo`` at a fresh database on the stand-in; return the database's name."""
    database = server.database()
    repo.config_path.write_text(snowflake_yaml(server, database, method=method))
    return database


def copy_sources(source: Repo, target: Repo, tables: list[str]) -> None:
    """Copy warehouse tables (``schema.table``) from ``source``'s DuckDB warehouse to ``target``'s
    Snowflake database, so both engines read the same rows."""
    from featureplane.compute.snowflake.engine import copy_from_duckdb

    copy_from_duckdb(target.config(), source.config().warehouse_path, tables)


def load_sql_tables(repo: Repo, tables: dict[str, str]) -> None:
    """Create source tables in ``repo``'s Snowflake database from DuckDB SQL (``{"raw.events": "SELECT
    ..."}``), the way ``helpers.make_warehouse`` does for the DuckDB warehouse."""
    import duckdb

    from featureplane.compute.snowflake.engine import load_tables

    con = duckdb.connect()
    try:
        data = {name: con.sql(sql).to_arrow_table() for name, sql in tables.items()}
    finally:
        con.close()
    load_tables(repo.config(), data)


def snowflake_events_repo(
    root, server: SnowflakeStandIn, views: str, tables: dict[str, str], *, method: str = "window"
) -> Repo:
    """``helpers.events_repo`` on the Snowflake path: entity ``user``, source ``events`` (raw.events)."""
    from conftest import write_repo
    from helpers import ENTITY_AND_SOURCE

    repo = Repo(root, write_repo(root, {"base.py": ENTITY_AND_SOURCE, "views.py": views}))
    use_snowflake(repo, server, method=method)
    load_sql_tables(repo, tables)
    return repo


# DuckDB spellings the stand-in (which runs SQL on DuckDB) would accept but Snowflake would not.
DUCKDB_ONLY = [
    "SEMI JOIN",
    "ANTI JOIN",
    "BY NAME",
    " WINDOW ",
    "list_",
    "flatten(",
    "unnest(",
    "epoch_us(",
    "make_timestamp",
    "arg_max",
    "arg_min",
    "//",
    "FILTER (WHERE",
    "lambda",
    "ASOF",
    "{'",
    "[]",
]


def not_snowflake_sql(sql: str) -> list[str]:
    """What in ``sql`` only DuckDB (and so the stand-in) would run: DuckDB's own spellings, and
    featureplane's own column names (``__fp_...``) written both quoted and unquoted, which Snowflake,
    folding unquoted names to upper case, reads as two names (DuckDB ignores case)."""
    import re

    problems = [c for c in DUCKDB_ONLY if c in sql]
    quoted = set(re.findall(r'"(__fp_\w+)"', sql))
    unquoted = set(re.findall(r'(?<!["\w])(__fp_\w+)(?!["\w])', sql))
    problems += [f"{name} quoted and unquoted" for name in sorted(quoted & unquoted)]
    return problems
