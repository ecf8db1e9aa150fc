"""Running ``snowpark`` mode transformations: in Snowflake, or locally in Snowpark's local testing mode.

A snowpark function receives one Snowpark DataFrame per source (already filtered to the materialization
window) and returns one DataFrame. On the Snowflake engine the DataFrames are lazy queries and the result
is compiled to SQL that runs in Snowflake. On the DuckDB engine they are built in a local testing session
from the window's rows, with upper-case column names as Snowflake gives unquoted columns, so the same
function runs unchanged in both places.

Local testing emulates Snowflake in pandas and has known gaps (an ASOF join ignores its match
condition; some expressions are evaluated wrongly after a filter); the parity tests show which
constructs give identical results.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from featureplane.compute.base import TransformationError, call_transformation
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.types import DataType, from_arrow

if TYPE_CHECKING:
    import pyarrow as pa


def run_function(
    view: FeatureViewSpec, start: datetime, end: datetime, source_frame: Callable[[str], Any]
) -> Any:
    """Call the view's function with a DataFrame per source (``source_frame(name)``) and the context;
    return the Snowpark DataFrame it gives back."""
    from snowflake.snowpark import DataFrame

    output = call_transformation(view, start, end, source_frame)
    if not isinstance(output, DataFrame):
        raise TransformationError(
            f"feature view {view.name!r}: a snowpark transformation must return a Snowpark DataFrame, "
            f"got {type(output).__name__}"
        )
    return output


@cache
def local_session() -> Any:
    """The process's Snowpark local testing session (no account, no network, telemetry off)."""
    from snowflake.snowpark import Session
    from snowflake.snowpark.mock._telemetry import LocalTestOOBTelemetryService

    LocalTestOOBTelemetryService.get_instance().disable()
    return Session.builder.config("local_testing", True).create()


def snowpark_type(dtype: DataType) -> Any:
    from snowflake.snowpark import types as T

    if dtype.is_array:
        return T.ArrayType(snowpark_type(dtype.element))
    return {
        "int64": T.LongType(),
        "float64": T.DoubleType(),
        "string": T.StringType(),
        "bool": T.BooleanType(),
        "timestamp": T.TimestampType(T.TimestampTimeZone.NTZ),
    }[dtype.name]


def local_dataframe(session: Any, table: pa.Table, source: str) -> Any:
    """A local testing DataFrame of ``table``'s rows, columns named as Snowflake would (upper case)."""
    import pyarrow as pa
    from snowflake.snowpark import types as T

    fields = []
    for column in table.schema:
        dtype = from_arrow(column.type)
        if dtype is None:
            raise TransformationError(
                f"source {source!r}: column {column.name!r} is {column.type}, which Snowpark cannot receive"
            )
        fields.append(T.StructField(column.name.upper(), snowpark_type(dtype)))
    columns = [
        c.cast(pa.timestamp("us", "UTC")).cast(pa.timestamp("us")) if pa.types.is_timestamp(c.type) else c
        for c in table.columns
    ]
    table = pa.Table.from_arrays(columns, names=table.column_names)
    rows = [tuple(row.values()) for row in table.to_pylist()]
    schema = T.StructType(fields)
    return session.create_dataframe(rows, schema=schema) if rows else session.create_dataframe([], schema)


def local_result(frame: Any, declared: dict[str, DataType]) -> pa.Table:
    """A local testing DataFrame's rows as Arrow, typed by the DataFrame's schema. An empty result takes
    the ``declared`` types (lower-case names): local testing mistypes some aggregates of no rows."""
    import pyarrow as pa

    from featureplane.types import to_arrow

    output = frame.to_pandas()
    arrays = []
    for field, name in zip(frame.schema.fields, output.columns, strict=True):
        target = _arrow_type(field.datatype)
        if output.empty and name.lower() in declared:
            target = to_arrow(declared[name.lower()])
        values = output[name]
        if target is None:
            arrays.append(pa.array(values, from_pandas=True))
        elif pa.types.is_timestamp(target):
            arrays.append(pa.array(values.astype("datetime64[us]"), target, from_pandas=True))
        else:
            arrays.append(pa.array(values.astype(object).where(values.notna(), None), target))
    return pa.Table.from_arrays(arrays, names=list(output.columns))


def _arrow_type(datatype: Any) -> pa.DataType | None:
    import pyarrow as pa
    from snowflake.snowpark import types as T

    if isinstance(datatype, T.StringType):
        return pa.string()
    if isinstance(datatype, T.BooleanType):
        return pa.bool_()
    if isinstance(datatype, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
        return pa.int64()
    if isinstance(datatype, T.FloatType | T.DoubleType | T.DecimalType):
        return pa.float64()
    if isinstance(datatype, T.TimestampType | T.DateType):
        return pa.timestamp("us")
    return None


def compiled_sql(frame: Any) -> tuple[list[str], str, list[str]]:
    """The statements a Snowflake-backed DataFrame runs: (setup queries, the final query, clean-up)."""
    plan = frame.queries
    queries = list(plan["queries"])
    return queries[:-1], queries[-1], list(plan.get("post_actions", []))
