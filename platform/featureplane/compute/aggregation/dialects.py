"""SQL spellings of the aggregation queries: DuckDB's, and Snowflake's where they differ."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from featureplane.types import DataType, to_sql

IDX = "__fp_idx"
POINT = "__fp_point"


def q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def column_sql(column: str) -> str:
    """A column as the generated SQL names it: user columns quoted, its own (``__fp_idx``) unquoted
    everywhere, so that Snowflake, which folds unquoted names to upper case, sees one name."""
    return column if column == IDX else q(column)


class Dialect:
    """The SQL spellings the generator needs. This is DuckDB's; ``SnowflakeDialect`` is Snowflake's."""

    name = "duckdb"
    # DuckDB features the generator uses when it can: named windows (``WINDOW w AS (...)``), structs
    # ordered field by field (first/last values with their times), ``UNION ALL BY NAME``.
    named_windows = True
    structs = True
    union_by_name = True

    def epoch_us(self, expr: str) -> str:
        return f"epoch_us({expr})"

    def timestamp_us(self, expr: str) -> str:
        return f"make_timestamp(CAST({expr} AS BIGINT))"

    def floor_div(self, expr: str, n: int) -> str:
        """Integer division rounding towards minus infinity (for times before 1970 too)."""
        return f"(({expr}) - ((({expr}) % {n}) + {n}) % {n}) // {n}"

    def struct(self, **fields: str) -> str:
        return "{" + ", ".join(f"'{k}': {v}" for k, v in fields.items()) + "}"

    def lambda_(self, arg: str, body: str) -> str:
        return f"lambda {arg}: {body}"

    def type_sql(self, dtype: DataType) -> str:
        return to_sql(dtype)

    def div(self, a: str, b: str) -> str:
        """``a / b`` as a double (DuckDB's ``/`` always is one)."""
        return f"{a} / {b}"

    def semi_join(self, relation: str, alias: str, left: str, keys: Sequence[str]) -> str:
        """Keep the rows of ``left`` (an alias) whose keys are in ``relation`` (without duplicates)."""
        return f" SEMI JOIN {relation} AS {alias} USING ({', '.join(q(k) for k in keys)})"

    def literal_time(self, value: datetime) -> str:
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"

    def first_last(self, function: str, value: str) -> str:
        """The first or last non-null ``value`` of a window frame over a stream ordered by index."""
        pick = "arg_min" if function == "first" else "arg_max"
        return f"{pick}({value}, CASE WHEN {value} IS NOT NULL THEN {IDX} END)"


class SnowflakeDialect(Dialect):
    """Snowflake's spellings: ``DATE_PART(EPOCH_MICROSECOND, ...)`` and ``TO_TIMESTAMP_NTZ(..., 6)`` for
    times as microseconds, ``MOD`` and an exact division for the floor division, window frames written
    out in each ``OVER`` (Snowflake has no ``WINDOW`` clause), ``FIRST_VALUE``/``LAST_VALUE ... IGNORE
    NULLS`` for first/last values over a frame, a tile's first/last values found through a window over
    its events (no struct ordering), and joins against distinct keys for semi joins."""

    name = "snowflake"
    named_windows = False
    structs = False
    union_by_name = False

    def epoch_us(self, expr: str) -> str:
        return f"DATE_PART(EPOCH_MICROSECOND, {expr})"

    def timestamp_us(self, expr: str) -> str:
        return f"TO_TIMESTAMP_NTZ(CAST({expr} AS BIGINT), 6)"

    def floor_div(self, expr: str, n: int) -> str:
        # The numerator is an exact multiple of n, so the division is exact in NUMBER (and in doubles).
        return f"CAST((({expr}) - MOD(MOD(({expr}), {n}) + {n}, {n})) / {n} AS BIGINT)"

    def struct(self, **fields: str) -> str:
        return "OBJECT_CONSTRUCT_KEEP_NULL(" + ", ".join(f"'{k}', {v}" for k, v in fields.items()) + ")"

    def lambda_(self, arg: str, body: str) -> str:
        return f"{arg} -> {body}"

    def type_sql(self, dtype: DataType) -> str:
        if dtype.is_array:
            return "ARRAY"
        return {"timestamp": "TIMESTAMP_NTZ(6)", "float64": "FLOAT"}.get(dtype.name, to_sql(dtype))

    def div(self, a: str, b: str) -> str:
        return f"CAST({a} AS DOUBLE) / {b}"

    def semi_join(self, relation: str, alias: str, left: str, keys: Sequence[str]) -> str:
        on = " AND ".join(f"{left}.{q(k)} = {alias}.{q(k)}" for k in keys)
        columns = ", ".join(q(k) for k in keys)
        return f" JOIN (SELECT DISTINCT {columns} FROM {relation}) AS {alias} ON {on}"

    def literal_time(self, value: datetime) -> str:
        return f"CAST('{value.isoformat(sep=' ')}' AS TIMESTAMP_NTZ(6))"

    def first_last(self, function: str, value: str) -> str:
        pick = "FIRST_VALUE" if function == "first" else "LAST_VALUE"
        return f"{pick}({value} IGNORE NULLS)"


DUCKDB = Dialect()
SNOWFLAKE = SnowflakeDialect()


# -- what a view stores --------------------------------------------------------------------------
