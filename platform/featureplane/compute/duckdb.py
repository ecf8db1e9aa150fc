"""The embedded engine: DuckDB over the local warehouse file, Parquet files and Delta tables.

``snowflake_sql`` transformations are transpiled from Snowflake's dialect with sqlglot. The warehouse is
attached read-only; while another process writes it (dbt, the data generator) DuckDB refuses the lock,
and the engine waits for it rather than failing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.compute.base import (
    Engine,
    OutputColumn,
    TransformationError,
    call_transformation,
    lookback,
    one_row_per_key_and_time,
    output_fields,
    pandas_output,
    select_declared,
    with_sources,
)
from featureplane.definitions.specs import FeatureViewSpec, SourceSpec
from featureplane.types import Array, Bool, DataType, Float64, Int64, String, Timestamp, to_sql

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from featureplane.compute.duckdb_stage import DuckDBStagedResult
    from featureplane.config import Config
    from featureplane.dbt import Manifest

_LOCK_MESSAGES = ("could not set lock", "conflicting lock")


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    return ".".join(quote(part) for part in name.split("."))


def literal_time(value: datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def literal_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_type(text: str) -> DataType | None:
    """The featureplane type of a DuckDB column type, or None when there is none."""
    text = text.upper().strip()
    if text.endswith("[]"):
        element = duckdb_type(text[:-2])
        return Array(element) if element is not None and not element.is_array else None
    base = re.sub(r"\(.*\)", "", text).strip()
    if base in {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
    }:
        return Int64
    if base in {"FLOAT", "DOUBLE", "DECIMAL", "REAL"}:
        return Float64
    if base in {"VARCHAR", "STRING", "TEXT"}:
        return String
    if base == "BOOLEAN":
        return Bool
    if base.startswith("TIMESTAMP") or base == "DATE":
        return Timestamp
    return None


def connect_warehouse(
    path: Path, *, read_only: bool = True, lock_timeout: float = 120.0
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the warehouse attached (and in use), UTC session time zone."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'").fetchall()
    if path.exists() or not read_only:
        mode = " (READ_ONLY)" if read_only else ""
        deadline = time.monotonic() + lock_timeout
        delay = 0.05
        while True:
            try:
                con.execute(f"ATTACH {literal_string(str(path))} AS warehouse{mode}").fetchall()
                break
            except duckdb.IOException as exc:
                if not any(m in str(exc).lower() for m in _LOCK_MESSAGES) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        con.execute("USE warehouse").fetchall()
    return con


def duckdb_settings(config: Config) -> dict[str, str]:
    """DuckDB's own limits from featureplane.yaml (engine: {memory_limit: 512MB, threads: 2}). Past
    memory_limit, joins and aggregations spill to temp_directory (<data_dir>/tmp/duckdb by default)
    instead of growing."""
    settings = {
        k: str(config.engine[k]) for k in ("memory_limit", "threads") if config.engine.get(k) is not None
    }
    if settings:
        spill = config.engine.get("temp_directory") or (config.data_dir / "tmp" / "duckdb")
        settings["temp_directory"] = str(config.resolve(spill))
    return settings


def apply_duckdb_settings(con: duckdb.DuckDBPyConnection, settings: dict[str, str]) -> None:
    """``SET`` each of ``duckdb_settings`` on a connection (creating the spill directory)."""
    for name, value in settings.items():
        if name == "temp_directory":
            Path(value).mkdir(parents=True, exist_ok=True)
        con.execute(f"SET {name} = {literal_string(value)}").fetchall()


# The stage's connection only scans its table and computes online rows from it (which spills): a
# smaller buffer pool than the engine's, since DuckDB keeps every block it reads cached up to its limit.
STAGE_MEMORY_LIMIT = "128MB"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def memory_bytes(text: str) -> int | None:
    """A memory_limit such as ``400MB`` or ``1GiB`` in bytes (None when not of that form)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def stage_settings(settings: dict[str, str]) -> dict[str, str]:
    """The engine's settings with memory_limit at most ``STAGE_MEMORY_LIMIT``."""
    limit = memory_bytes(settings.get("memory_limit", ""))
    if limit is not None and limit <= (memory_bytes(STAGE_MEMORY_LIMIT) or 0):
        return settings
    return {**settings, "memory_limit": STAGE_MEMORY_LIMIT}


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.warehouse_path = config.warehouse_path
        self.lock_timeout = float(config.engine.get("lock_timeout_seconds", 120))
        self.settings = duckdb_settings(config)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._manifest: Manifest | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = connect_warehouse(self.warehouse_path, lock_timeout=self.lock_timeout)
            apply_duckdb_settings(con, self.settings)
            self._con = con
        return self._con

    def release_memory(self) -> None:
        """Close the connection: DuckDB keeps the memory of its last query for reuse until then. The
        next query reconnects."""
        self.close()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- sources ---------------------------------------------------------------------------------

    def source_relation(self, source: SourceSpec) -> str:
        if source.table:
            return quote_table(source.table)
        if source.path:
            return (
                f"read_parquet({literal_string(str(self.config.resolve(source.path)))}, union_by_name = true)"
            )
        if source.dbt_model:
            return self.dbt_relation(source.dbt_model)
        raise TransformationError(f"source {source.name!r} has no table, path or dbt model to read")

    def _dbt_manifest(self) -> Manifest:
        """The dbt project's manifest, read once per engine (one command or run sees one version)."""
        from featureplane.dbt import DbtError, dbt_project, load_manifest

        if self._manifest is None:
            try:
                project = dbt_project(self.config)
                if project is None:
                    raise TransformationError(
                        f"{self.config.path} has no dbt: section naming the dbt project"
                    )
                self._manifest = load_manifest(project)
            except DbtError as exc:
                raise TransformationError(str(exc)) from exc
        return self._manifest

    def dbt_relation(self, model: str) -> str:
        """Where dbt builds the model (``schema.identifier`` in the warehouse), read from the manifest."""
        manifest = self._dbt_manifest()
        if manifest.model(model) is None:
            raise TransformationError(
                f"the dbt project has no model named {model!r} (models: {manifest.describe_models()})"
            )
        schema, identifier = manifest.relation(model)
        return f"{quote(schema)}.{quote(identifier)}"

    def not_built_yet(self, source: SourceSpec) -> str | None:
        if not source.dbt_model:
            return None
        if not self.warehouse_path.exists():
            return f"dbt has not built model {source.dbt_model!r} yet (there is no warehouse at {self.warehouse_path})"
        try:
            manifest = self._dbt_manifest()
        except TransformationError:
            return None  # check_source reports it
        if manifest.model(source.dbt_model) is None:
            return None
        schema, identifier = manifest.relation(source.dbt_model)
        found = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
            "AND table_schema = ? AND table_name = ?",
            [schema, identifier],
        ).fetchall()
        if found[0][0]:
            return None
        return f"dbt has not built model {source.dbt_model!r} in the warehouse yet"

    def source_sql(self, source: SourceSpec, start: datetime | None, end: datetime | None) -> str:
        sql = f"SELECT * FROM {self.source_relation(source)}"
        ts = quote(source.timestamp_field) if source.timestamp_field else None
        conditions = []
        if ts and start is not None:
            conditions.append(f"{ts} >= {literal_time(start)}")
        if ts and end is not None:
            conditions.append(f"{ts} < {literal_time(end)}")
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        return sql

    def check_source(self, source: SourceSpec) -> str | None:
        import duckdb

        if source.kind != "batch":
            return None
        if source.path:
            matches = list(Path(self.config.resolve(source.path).parent).glob(Path(source.path).name))
            if not matches:
                return f"no Parquet files match {source.path!r}"
        elif source.table and not self.warehouse_path.exists():
            return f"the warehouse {self.warehouse_path} does not exist yet, so table {source.table!r} cannot be read"
        try:
            columns = dict(self._describe_sql(f"SELECT * FROM {self.source_relation(source)}"))
        except TransformationError as exc:
            return str(exc)
        except duckdb.Error as exc:
            return f"cannot read {source.table or source.path or source.dbt_model!r}: {_first_line(exc)}"
        if source.timestamp_field and source.timestamp_field.lower() not in {c.lower() for c in columns}:
            return (
                f"timestamp_field {source.timestamp_field!r} is not a column (columns: {', '.join(columns)})"
            )
        return None

    def source_rows(
        self, source: SourceSpec, start: datetime | None = None, end: datetime | None = None
    ) -> Any:
        return self.con.sql(self.source_sql(source, start, end)).df()

    # -- transformations -------------------------------------------------------------------------

    def _lookback(self, view: FeatureViewSpec) -> timedelta:
        return lookback(view)

    def _sql_query(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> str:
        import sqlglot

        transformation = view.transformation
        assert transformation is not None and transformation.sql is not None
        try:
            body = sqlglot.transpile(transformation.sql, read="snowflake", write="duckdb")[0]
        except sqlglot.errors.ParseError as exc:
            raise TransformationError(
                f"feature view {view.name!r}: its Snowflake SQL does not parse: {exc}"
            ) from exc
        return with_sources(
            view, body, start, end, lambda name, since, until: self.source_sql(sources[name], since, until)
        )

    def _describe_sql(self, sql: str) -> list[tuple[str, str]]:
        relation = self.con.sql(f"SELECT * FROM ({sql}) AS __fp_describe LIMIT 0")
        return [(name, str(dtype)) for name, dtype in zip(relation.columns, relation.types, strict=True)]

    def describe(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec]
    ) -> list[tuple[str, DataType | None]] | None:
        if view.transformation is None or view.transformation.mode != "snowflake_sql":
            return None
        epoch = datetime(2000, 1, 1)
        sql = self._sql_query(view, sources, epoch, epoch)
        return [(name, duckdb_type(dtype)) for name, dtype in self._describe_sql(sql)]

    def run_transformation(
        self,
        view: FeatureViewSpec,
        sources: dict[str, SourceSpec],
        start: datetime,
        end: datetime,
        *,
        time_order: bool = False,
    ) -> pa.Table:
        return self._run(
            view, sources, start, end, lambda sql: self.con.sql(sql).to_arrow_table(), time_order
        )

    def _run(
        self,
        view: FeatureViewSpec,
        sources: dict[str, SourceSpec],
        start: datetime,
        end: datetime,
        fetch: Callable[[str], Any],
        time_order: bool,
    ) -> Any:
        """``fetch`` of the conformed query of the view's transformation over ``[start, end)``."""
        import duckdb

        transformation = view.transformation
        if transformation is None:
            raise TransformationError(f"feature view {view.name!r} has no transformation to run")
        try:
            if transformation.mode == "snowflake_sql":
                inner = self._sql_query(view, sources, start, end)
            elif transformation.mode == "pandas":
                inner = self._run_pandas(view, sources, start, end)
            elif transformation.mode == "snowpark":
                inner = self._run_snowpark(view, sources, start, end)
            else:
                raise TransformationError(
                    f"feature view {view.name!r}: mode {transformation.mode!r} does not run on the DuckDB engine"
                )
            return fetch(self._conform(view, inner, start, end, time_order))
        except duckdb.Error as exc:
            raise TransformationError(
                f"feature view {view.name!r}: the transformation failed on DuckDB: {_first_line(exc)}"
            ) from exc

    def stages_locally(self, view: FeatureViewSpec) -> bool:
        """An aggregate view's tiles (about one per event, held as a whole for a backfill): staged."""
        return view.is_aggregate

    def stage_transformation(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> DuckDBStagedResult:
        """The rows, sorted by the timestamp, in a database file of their own under the spill
        directory (``compute.duckdb_stage``); the engine's connection is closed afterwards."""
        import duckdb

        from featureplane.compute.duckdb_stage import DuckDBStagedResult, create_stage, stage_path

        path = stage_path(self.spill_directory)
        try:
            self._run(view, sources, start, end, lambda sql: create_stage(self.con, path, sql), True)
            self.release_memory()
            con = duckdb.connect(str(path))
            con.execute("SET TimeZone='UTC'").fetchall()
            apply_duckdb_settings(con, stage_settings(self.settings))
            return DuckDBStagedResult(path, view.timestamp_field, con)
        except BaseException:
            self.release_memory()
            for suffix in ("", ".wal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            raise

    @property
    def spill_directory(self) -> Path:
        spill = self.settings.get("temp_directory")
        return Path(spill) if spill else self.config.data_dir / "tmp" / "duckdb"

    def materialization_rows(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> pa.Table:
        """The rows sorted by the timestamp alone (cheaper than by keys and timestamp)."""
        return self.run_transformation(view, sources, start, end, time_order=True)

    def _run_pandas(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> str:
        since = start - self._lookback(view)
        output = call_transformation(
            view, start, end, lambda name: self.source_rows(sources[name], since, end)
        )
        name = f"__fp_pandas_{view.name}"
        self.con.register(name, pandas_output(view, output))
        return f"SELECT * FROM {quote(name)}"

    def _run_snowpark(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> str:
        """Run a snowpark function in Snowpark's local testing mode over the window's source rows."""
        from featureplane.compute.snowflake import snowpark

        session = snowpark.local_session()
        since = start - self._lookback(view)

        def frame(name: str) -> Any:
            rows = self.con.sql(self.source_sql(sources[name], since, end)).to_arrow_table()
            return snowpark.local_dataframe(session, rows, name)

        output = snowpark.run_function(view, start, end, frame)
        try:
            table = snowpark.local_result(output, {n.lower(): t for n, t in output_fields(view)})
        except Exception as exc:
            raise TransformationError(
                f"feature view {view.name!r}: Snowpark local testing could not run it: {exc!r}"
            ) from exc
        name = f"__fp_snowpark_{view.name}"
        self.con.register(name, table)
        return f"SELECT * FROM {quote(name)}"

    def _conform(
        self, view: FeatureViewSpec, inner: str, start: datetime, end: datetime, time_order: bool = False
    ) -> str:
        """The query that selects the declared columns, checks and casts their types, keeps rows inside
        the window; for an aggregate view, folds the rows into tiles in the same query. Sorted by join
        keys and timestamp, or with ``time_order`` by the timestamp alone."""
        actual = {
            name.lower(): OutputColumn(name, raw, lambda _, raw=raw: duckdb_type(raw))
            for name, raw in self._describe_sql(inner)
        }
        wanted = output_fields(view)
        if view.is_aggregate:
            from featureplane.compute.aggregation.tiles import declared_inputs

            wanted = declared_inputs(view, wanted)
        columns = select_declared(
            view, wanted, actual, quote, lambda c, declared: f"CAST({quote(c.name)} AS {to_sql(declared)})"
        )
        ts = quote(actual[view.timestamp_field.lower()].name)
        sql = (
            f"SELECT {', '.join(columns)} FROM ({inner}) AS __fp_out "
            f"WHERE CAST({ts} AS TIMESTAMP) >= {literal_time(start)} AND CAST({ts} AS TIMESTAMP) < {literal_time(end)}"
        )
        if view.is_aggregate:
            from featureplane.compute.aggregation.tiles import tile_sql

            return tile_sql(view, sql, time_order=time_order)
        order = ", ".join(quote(k.name) for k in view.join_keys) + f", {quote(view.timestamp_field)}"
        if time_order:
            order = quote(view.timestamp_field)
        sql = one_row_per_key_and_time(view, sql, quote)
        return f"{sql} ORDER BY {order}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
