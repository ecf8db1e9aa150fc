"""The embedded engine: DuckDB over the local warehouse file, Parquet files and Delta tables.

``snowflake_sql`` transformations are transpiled from Snowflake's dialect with sqlglot. The warehouse is
attached read-only; while another process writes it (dbt, the data generator) DuckDB refuses the lock,
and the engine waits for it rather than failing.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.definitions.transformation import (
    CONTEXT_PARAMETER,
    END_PLACEHOLDER,
    START_PLACEHOLDER,
    MaterializationContext,
    load_python_function,
    source_placeholder,
)
from featureplane.engines.base import Engine, TransformationError
from featureplane.specs import FeatureViewSpec, SourceSpec
from featureplane.types import Array, Bool, DataType, Float64, Int64, String, Timestamp, compatible, to_sql

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from featureplane.config import Config

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


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.warehouse_path = config.warehouse_path
        self.lock_timeout = float(config.engine.get("lock_timeout_seconds", 120))
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = connect_warehouse(self.warehouse_path, lock_timeout=self.lock_timeout)
        return self._con

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
            return quote_table(self.dbt_relation(source.dbt_model))
        raise TransformationError(f"source {source.name!r} has no table, path or dbt model to read")

    def dbt_relation(self, model: str) -> str:
        """Where a dbt model is built in the warehouse (schema.model)."""
        return f"{self.config.engine.get('dbt_schema', 'main')}.{model}"

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
        seconds = int(view.options.get("lookback_seconds", 0) or 0)
        return timedelta(seconds=seconds)

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
        body = body.replace(START_PLACEHOLDER, start.isoformat(sep=" ")).replace(
            END_PLACEHOLDER, end.isoformat(sep=" ")
        )
        lookback = self._lookback(view)
        ctes = []
        for name in dict.fromkeys(p for p in transformation.parameters if p != CONTEXT_PARAMETER):
            source_start = start - lookback if start is not None else None
            ctes.append(
                f"{source_placeholder(name)} AS ({self.source_sql(sources[name], source_start, end)})"
            )
        return f"WITH {', '.join(ctes)} SELECT * FROM ({body}) AS __fp_body"

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

    def _python_inputs(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> list[Any]:
        lookback = self._lookback(view)
        inputs: list[Any] = []
        assert view.transformation is not None
        for parameter in view.transformation.parameters:
            if parameter == CONTEXT_PARAMETER:
                inputs.append(MaterializationContext(start, end))
            else:
                inputs.append(self.source_rows(sources[parameter], start - lookback, end))
        return inputs

    def run_transformation(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> pa.Table:
        import duckdb

        transformation = view.transformation
        if transformation is None:
            raise TransformationError(f"feature view {view.name!r} has no transformation to run")
        try:
            if transformation.mode == "snowflake_sql":
                inner = self._sql_query(view, sources, start, end)
            elif transformation.mode == "pandas":
                inner = self._run_pandas(view, sources, start, end)
            else:
                raise TransformationError(
                    f"feature view {view.name!r}: mode {transformation.mode!r} does not run on the DuckDB engine"
                )
            return self._conform(view, inner, start, end)
        except duckdb.Error as exc:
            raise TransformationError(
                f"feature view {view.name!r}: the transformation failed on DuckDB: {_first_line(exc)}"
            ) from exc

    def _run_pandas(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> str:
        import pandas as pd
        import pyarrow as pa

        assert view.transformation is not None
        function = load_python_function(view.transformation)
        try:
            output = function(*self._python_inputs(view, sources, start, end))
        except Exception as exc:
            raise TransformationError(
                f"feature view {view.name!r}: {view.transformation.function_name}() raised {exc!r}"
            ) from exc
        if not isinstance(output, pd.DataFrame):
            raise TransformationError(
                f"feature view {view.name!r}: a pandas transformation must return a DataFrame, got {type(output).__name__}"
            )
        table = pa.Table.from_pandas(output, preserve_index=False)
        name = f"__fp_pandas_{view.name}"
        self.con.register(name, table)
        return f"SELECT * FROM {quote(name)}"

    def _conform(self, view: FeatureViewSpec, inner: str, start: datetime, end: datetime) -> pa.Table:
        """Select the declared columns, check and cast their types, keep rows inside the window; for an
        aggregate view, fold the rows into tiles in the same query."""
        actual = {
            name.lower(): (name, duckdb_type(dtype), dtype) for name, dtype in self._describe_sql(inner)
        }
        wanted: list[tuple[str, DataType | None]] = [(k.name, k.type) for k in view.join_keys]
        wanted.append((view.timestamp_field, Timestamp))
        wanted += [(f.column or f.name, f.type) for f in view.features if f.kind == "attribute"]
        if view.is_aggregate:
            from featureplane.aggregation import input_columns, typed_input_columns

            typed = typed_input_columns(view)
            selected = {name.lower() for name, _ in wanted}
            # Columns that are only counted keep their type (None); the others are cast to the declared type.
            wanted += [(c, typed.get(c)) for c in input_columns(view) if c.lower() not in selected]
        problems = []
        columns = []
        for name, declared in wanted:
            found = actual.get(name.lower())
            if found is None:
                problems.append(f"column {name!r} is missing from the output")
                continue
            real_name, dtype, raw = found
            if declared is None:
                columns.append(f"{quote(real_name)} AS {quote(name)}")
                continue
            if dtype is None or not compatible(declared, dtype):
                problems.append(f"column {name!r} is {raw} but is declared {declared!r}")
                continue
            columns.append(f"CAST({quote(real_name)} AS {to_sql(declared)}) AS {quote(name)}")
        if problems:
            raise TransformationError(
                f"feature view {view.name!r}: output does not match its declaration: "
                + "; ".join(problems)
                + f" (output columns: {', '.join(v[0] for v in actual.values())})"
            )
        ts = quote(actual[view.timestamp_field.lower()][0])
        sql = (
            f"SELECT {', '.join(columns)} FROM ({inner}) AS __fp_out "
            f"WHERE CAST({ts} AS TIMESTAMP) >= {literal_time(start)} AND CAST({ts} AS TIMESTAMP) < {literal_time(end)}"
        )
        if view.is_aggregate:
            from featureplane.aggregation import tile_sql

            return self.con.sql(tile_sql(view, sql)).to_arrow_table()
        order = ", ".join(quote(k.name) for k in view.join_keys) + f", {quote(view.timestamp_field)}"
        return self.con.sql(f"{sql} ORDER BY {order}").to_arrow_table()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
