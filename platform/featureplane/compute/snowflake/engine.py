"""The production engine: transformations run inside Snowflake.

``snowflake_sql`` views run as written (no transpiling): each source placeholder becomes a CTE over the
source table filtered to the window, and the output is checked against the declaration, cast to the
declared types and cut to ``[start, end)``, all in SQL. ``snowpark`` views receive lazy Snowpark
DataFrames over the same filtered sources; the DataFrame they return is compiled to SQL and runs the
same way. ``pandas`` views get the window's rows in Python (their nature) and their output is uploaded.

A whole range of partitions is one transformation query. When the offline store is Snowflake on the same
session, the result stays in a temporary table that the store copies (``stage_transformation``).

Aggregate views fold their rows into tiles (partial aggregates per entity and interval) in the same
query, with the SQL that ``featureplane.compute.aggregation`` generates in Snowflake's dialect, so only tiles are
staged and the rows never leave Snowflake.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.compute.base import (
    Engine,
    OutputColumn,
    StagedResult,
    TransformationError,
    call_transformation,
    lookback,
    one_row_per_key_and_time,
    output_fields,
    pandas_output,
    select_declared,
    with_sources,
)
from featureplane.compute.snowflake.client import (
    SnowflakeClient,
    SnowflakeError,
    SnowflakeSettings,
    UsesSnowflake,
    cast_to,
    column_type,
    conform_arrow,
    literal_time,
    quote,
    user_identifier,
    user_table,
)
from featureplane.config import ConfigError
from featureplane.definitions.specs import FeatureViewSpec, SourceSpec
from featureplane.types import DataType, Timestamp

if TYPE_CHECKING:
    import pyarrow as pa

    from featureplane.config import Config


class SnowflakeStagedResult(StagedResult):
    """A transformation's rows in a temporary table of the engine's session."""

    def __init__(
        self, client: SnowflakeClient, relation: str, view: FeatureViewSpec, rows: int, nulls: dict[str, int]
    ) -> None:
        self.client = client
        self.relation = relation
        self.view = view
        self._rows = rows
        self._nulls = nulls
        self._arrow: pa.Table | None = None

    def __repr__(self) -> str:
        return f"SnowflakeStagedResult({self.relation}, {self._rows} rows)"

    @property
    def num_rows(self) -> int:
        return self._rows

    def null_count(self, column: str) -> int:
        if column not in self._nulls:
            sql = f"SELECT COUNT_IF({quote(column)} IS NULL) FROM {self.relation}"
            self._nulls[column] = int(self.client.fetchall(sql)[0][0] or 0)
        return self._nulls[column]

    def with_markers(
        self, view: FeatureViewSpec, partitions: list[tuple[datetime, datetime]]
    ) -> StagedResult:
        """Add an aggregate view's partition markers (null join keys, the partition's start) in place."""
        ts = quote(view.timestamp_field)
        rows = ", ".join(f"({literal_time(start)})" for start, _ in partitions)
        self.client.execute(f"INSERT INTO {self.relation} ({ts}) VALUES {rows}")
        self._rows += len(partitions)
        self._nulls = {}
        self._arrow = None
        return self

    def to_arrow(self) -> pa.Table:
        if self._arrow is None:
            fields = output_fields(self.view)
            order = ", ".join(quote(n) for n in [*self.view.join_key_names, self.view.timestamp_field])
            table = self.client.fetch_arrow(f"SELECT * FROM {self.relation} ORDER BY {order}")
            self._arrow = conform_arrow(table, fields)
        return self._arrow


class SnowflakeEngine(UsesSnowflake, Engine):
    name = "snowflake"

    def __init__(self, config: Config) -> None:
        self.config = config
        try:
            self.settings = SnowflakeSettings.from_section(config.engine, f"{config.path}: engine")
        except SnowflakeError as exc:
            raise ConfigError(str(exc)) from None
        self._columns: dict[str, dict[str, str]] = {}
        self._snowpark: Any = None
        self._staged: list[str] = []

    def __repr__(self) -> str:
        return f"SnowflakeEngine({self.settings!r})"

    def close(self) -> None:
        if self._client is not None:
            for relation in self._staged:
                self._client.drop_quietly(relation)
        self._staged.clear()
        self._snowpark = None
        self.release()

    # -- sources ---------------------------------------------------------------------------------

    def source_relation(self, source: SourceSpec) -> str:
        if source.table:
            return user_table(source.table)
        if source.dbt_model:
            schema = self.config.engine.get("dbt_schema")
            return user_table(f"{schema}.{source.dbt_model}" if schema else source.dbt_model)
        if source.path:
            raise TransformationError(
                f"source {source.name!r} reads Parquet files ({source.path}), which Snowflake cannot read "
                "from this machine: load them into a table (or a dbt model) and point the source at it"
            )
        raise TransformationError(f"source {source.name!r} has no table or dbt model to read")

    def _source_columns(self, source: SourceSpec) -> dict[str, str]:
        """The source's columns, lower-cased name -> the name Snowflake stores."""
        relation = self.source_relation(source)
        if relation not in self._columns:
            columns = self.client.describe(f"SELECT * FROM {relation}")
            self._columns[relation] = {name.lower(): name for name, _, _ in columns}
        return self._columns[relation]

    def source_sql(self, source: SourceSpec, start: datetime | None, end: datetime | None) -> str:
        relation = self.source_relation(source)
        sql = f"SELECT * FROM {relation}"
        if source.timestamp_field and (start is not None or end is not None):
            try:
                name = self._source_columns(source).get(source.timestamp_field.lower())
            except SnowflakeError as exc:
                raise TransformationError(f"source {source.name!r}: {exc}") from None
            ts = quote(name) if name else user_identifier(source.timestamp_field)
            conditions = []
            if start is not None:
                conditions.append(f"{ts} >= {literal_time(start)}")
            if end is not None:
                conditions.append(f"{ts} < {literal_time(end)}")
            sql += " WHERE " + " AND ".join(conditions)
        return sql

    def check_source(self, source: SourceSpec) -> str | None:
        if source.kind != "batch":
            return None
        try:
            columns = self._source_columns(source)
        except TransformationError as exc:
            return str(exc)
        except SnowflakeError as exc:
            return f"cannot read {source.table or source.dbt_model!r}: {exc}"
        if source.timestamp_field and source.timestamp_field.lower() not in columns:
            return (
                f"timestamp_field {source.timestamp_field!r} is not a column "
                f"(columns: {', '.join(columns.values())})"
            )
        return None

    def source_rows(
        self, source: SourceSpec, start: datetime | None = None, end: datetime | None = None
    ) -> Any:
        """The window's rows as pandas, with Snowflake's upper-case column names lower-cased and
        integers and booleans in pandas' nullable dtypes (as DuckDB gives them: an integer column
        with nulls stays integers)."""
        import pandas as pd
        import pyarrow as pa

        table = self.client.fetch_arrow(self.source_sql(source, start, end))
        names = [n.lower() if n.isupper() else n for n in table.column_names]
        nullable = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
        return table.rename_columns(names).to_pandas(types_mapper=nullable.get)

    # -- transformations -------------------------------------------------------------------------

    def _sql_query(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> str:
        """The view's SQL as written (Snowflake's own dialect), over the window's source rows."""
        assert view.transformation is not None and view.transformation.sql is not None
        return with_sources(
            view,
            view.transformation.sql,
            start,
            end,
            lambda name, since, until: self.source_sql(sources[name], since, until),
        )

    def describe(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec]
    ) -> list[tuple[str, DataType | None]] | None:
        if view.transformation is None or view.transformation.mode != "snowflake_sql":
            return None
        epoch = datetime(2000, 1, 1)
        declared = {name.lower(): dtype for name, dtype in output_fields(view)}
        return [
            (name, column_type(kind, scale, declared.get(name.lower())))
            for name, kind, scale in self.client.describe(self._sql_query(view, sources, epoch, epoch))
        ]

    def _snowpark_session(self) -> Any:
        if self._snowpark is None:
            from snowflake.snowpark import Session

            self._snowpark = Session.builder.configs({"connection": self.client.connection}).create()
            self._snowpark.telemetry_enabled = False
        return self._snowpark

    def _inner(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> tuple[str, list[str]]:
        """The transformation as one query, and statements to run after it is consumed."""
        transformation = view.transformation
        if transformation is None:
            raise TransformationError(f"feature view {view.name!r} has no transformation to run")
        if transformation.mode == "snowflake_sql":
            return self._sql_query(view, sources, start, end), []
        if transformation.mode == "snowpark":
            from featureplane.compute.snowflake import snowpark

            session = self._snowpark_session()
            since = start - lookback(view)
            output = snowpark.run_function(
                view, start, end, lambda name: session.sql(self.source_sql(sources[name], since, end))
            )
            setup, query, cleanup = snowpark.compiled_sql(output)
            for statement in setup:
                self.client.execute(statement)
            return query, cleanup
        if transformation.mode == "pandas":
            relation = self._run_pandas(view, sources, start, end)
            return f"SELECT * FROM {relation}", [f"DROP TABLE IF EXISTS {relation}"]
        raise TransformationError(
            f"feature view {view.name!r}: mode {transformation.mode!r} does not run on the Snowflake engine"
        )

    def _run_pandas(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> str:
        since = start - lookback(view)
        output = call_transformation(
            view, start, end, lambda name: self.source_rows(sources[name], since, end)
        )
        return self.client.upload(pandas_output(view, output), self.client.temporary_name("OUTPUT"))

    def _conformed(self, view: FeatureViewSpec, inner: str, start: datetime, end: datetime) -> str:
        """Select the declared columns, check and cast their types, keep rows inside the window. An
        aggregate view's input columns are selected too (cast to their declared types, except those
        that are only counted)."""
        described = self.client.describe(f"SELECT * FROM ({inner}) AS __fp_out")
        actual = {
            name.lower(): OutputColumn(
                name,
                f"{kind}({scale})" if kind == "FIXED" and scale else kind,
                lambda declared, kind=kind, scale=scale: column_type(kind, scale, declared),
            )
            for name, kind, scale in described
        }
        kinds = {name.lower(): kind for name, kind, _ in described}
        wanted = output_fields(view)
        if view.is_aggregate:
            from featureplane.compute.aggregation.tiles import declared_inputs

            wanted = declared_inputs(view, wanted)
        columns = select_declared(
            view,
            wanted,
            actual,
            quote,
            lambda c, declared: cast_to(quote(c.name), declared, kinds[c.name.lower()]),
        )
        real = actual[view.timestamp_field.lower()].name
        ts = cast_to(quote(real), Timestamp, kinds[real.lower()])
        return (
            f"SELECT {', '.join(columns)} FROM ({inner}) AS __fp_out "
            f"WHERE {ts} >= {literal_time(start)} AND {ts} < {literal_time(end)}"
        )

    def _run(
        self,
        view: FeatureViewSpec,
        sources: dict[str, SourceSpec],
        start: datetime,
        end: datetime,
        stage: bool,
    ) -> pa.Table | SnowflakeStagedResult:
        cleanup: list[str] = []
        try:
            inner, cleanup = self._inner(view, sources, start, end)
            sql = self._conformed(view, inner, start, end)
            stored = view
            if not view.is_aggregate:
                sql = one_row_per_key_and_time(view, sql, quote)
            if view.is_aggregate:
                from featureplane.compute.aggregation.dialects import SNOWFLAKE
                from featureplane.compute.aggregation.tiles import tile_sql, tile_view

                sql, stored = tile_sql(view, sql, SNOWFLAKE), tile_view(view)
            if stage:
                return self._stage(stored, sql)
            if view.is_aggregate:  # tile_sql orders its tiles
                return conform_arrow(self.client.fetch_arrow(sql), output_fields(stored))
            order = ", ".join(quote(n) for n in [*view.join_key_names, view.timestamp_field])
            return conform_arrow(self.client.fetch_arrow(f"{sql} ORDER BY {order}"), output_fields(view))
        except SnowflakeError as exc:
            raise TransformationError(
                f"feature view {view.name!r}: the transformation failed on Snowflake: {exc}"
            ) from None
        finally:
            for statement in cleanup:
                with contextlib.suppress(SnowflakeError):
                    self.client.execute(statement)

    def _stage(self, view: FeatureViewSpec, sql: str) -> SnowflakeStagedResult:
        relation = quote(self.client.temporary_name("STAGE"))
        self.client.execute(f"CREATE TEMPORARY TABLE {relation} AS {sql}")
        self._staged.append(relation)
        counts = ", ".join(f"COUNT_IF({quote(k)} IS NULL)" for k in view.join_key_names)
        row = self.client.fetchall(f"SELECT COUNT(*), {counts} FROM {relation}")[0]
        nulls = {k: int(n or 0) for k, n in zip(view.join_key_names, row[1:], strict=True)}
        return SnowflakeStagedResult(self.client, relation, view, int(row[0]), nulls)

    def run_transformation(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> pa.Table:
        result = self._run(view, sources, start, end, stage=False)
        assert not isinstance(result, StagedResult)
        return result

    def stage_transformation(
        self, view: FeatureViewSpec, sources: dict[str, SourceSpec], start: datetime, end: datetime
    ) -> SnowflakeStagedResult:
        result = self._run(view, sources, start, end, stage=True)
        assert isinstance(result, SnowflakeStagedResult)
        return result


def load_tables(config: Config, tables: dict[str, pa.Table]) -> None:
    """Create (or replace) source tables in Snowflake from Arrow tables, e.g. ``{"raw.users": ...}``:
    the example data, or test data. Names and columns are unquoted, as users write them."""
    engine = SnowflakeEngine(config)
    try:
        for name, table in tables.items():
            if "." in name:
                engine.client.execute(f"CREATE SCHEMA IF NOT EXISTS {user_table(name.rsplit('.', 1)[0])}")
            engine.client.upload(table, name, temporary=False, quoted=False)
    finally:
        engine.close()


def copy_from_duckdb(config: Config, warehouse: Path, tables: list[str]) -> None:
    """Copy tables of a DuckDB warehouse file to Snowflake (the example generator writes DuckDB)."""
    from featureplane.compute.duckdb import connect_warehouse

    con = connect_warehouse(warehouse)
    try:
        data = {name: con.sql(f"SELECT * FROM {name}").to_arrow_table() for name in tables}
    finally:
        con.close()
    load_tables(config, data)
