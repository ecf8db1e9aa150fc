"""Aggregate expectations over a per-partition summary: each partition's statistic computed the way
GX's pandas metric computes it, so that one GX validation decides every partition of a range."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.monitoring.expectations import ResolvedExpectation
from featureplane.monitoring.partitioning import PartitionSlice

if TYPE_CHECKING:
    import pyarrow as pa


PARTITION_COLUMN = "__fp_partition"
SUMMARY_PREFIX = "__fp_statistic_"
BOUND_ARGUMENTS = frozenset({"min_value", "max_value", "strict_min", "strict_max"})


def unique_proportion(column: Any, rows: int) -> float:
    """GX's ``column.unique_proportion``: distinct non-null values over non-null values, 0 if none."""
    nulls = int(column.isnull().sum())
    return column.nunique() / (rows - nulls) if rows > 0 and rows != nulls else 0


# Each partition's statistic exactly as GX's pandas metric computes it from the partition's frame
# (pandas skips nulls; ``std`` is the sample standard deviation): the column's values, its row count.
SUMMARY_STATISTICS: dict[str, Any] = {
    "expect_table_row_count_to_be_between": lambda column, rows: rows,
    "expect_column_mean_to_be_between": lambda column, rows: column.mean(),
    "expect_column_min_to_be_between": lambda column, rows: column.min(),
    "expect_column_max_to_be_between": lambda column, rows: column.max(),
    "expect_column_sum_to_be_between": lambda column, rows: column.sum(),
    "expect_column_median_to_be_between": lambda column, rows: column[~column.isnull()].median(),
    "expect_column_stdev_to_be_between": lambda column, rows: column.std(),
    "expect_column_unique_value_count_to_be_between": lambda column, rows: column.nunique(),
    "expect_column_proportion_of_unique_values_to_be_between": unique_proportion,
}
NUMERIC_ONLY = frozenset(SUMMARY_STATISTICS) - {
    "expect_table_row_count_to_be_between",
    "expect_column_unique_value_count_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between",
}


def summarizable(expectation: ResolvedExpectation, table: pa.Table) -> bool:
    """Whether the summary path decides ``expectation`` as GX would partition by partition: a known
    aggregate, numeric bounds (at least one), no other arguments, and a column of a plain type."""
    import pyarrow as pa

    if expectation.type not in SUMMARY_STATISTICS:
        return False
    kwargs = expectation.kwargs
    column = kwargs.get("column")
    table_level = expectation.type == "expect_table_row_count_to_be_between"
    if set(kwargs) - BOUND_ARGUMENTS - (set() if table_level else {"column"}):
        return False
    bounds = [kwargs.get("min_value"), kwargs.get("max_value")]
    if all(b is None for b in bounds) or any(
        b is not None and (isinstance(b, bool) or not isinstance(b, int | float)) for b in bounds
    ):
        return False
    if any(not isinstance(kwargs.get(s, False), bool) for s in ("strict_min", "strict_max")):
        return False
    if table_level:
        return True
    if not isinstance(column, str) or column not in table.column_names:
        return False
    dtype = table.schema.field(column).type
    numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
    if expectation.type in NUMERIC_ONLY:
        return numeric
    return numeric or pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def comparable(value: Any) -> bool:
    """A statistic GX compares with the bounds (GX fails a null or NaN one; infinities go the per-
    partition way too, so their observed value is the one GX reports)."""
    import pandas as pd

    if value is None or value is pd.NA:
        return False
    try:
        return math.isfinite(value)
    except (TypeError, ValueError, OverflowError):
        return False


def summary_column(values: list[Any]) -> Any:
    """The statistics as one column: integers stay exact (nullable Int64), the rest float64."""
    import pandas as pd

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) or (hasattr(v, "dtype") and v.dtype.kind in "iu") for v in present):
        return pd.array([None if v is None else int(v) for v in values], dtype="Int64")
    return pd.array([None if v is None else float(v) for v in values], dtype="float64")


MICROS_PREFIX = "__fp_micros__"
EPOCH = datetime(1970, 1, 1)


def micros_column(column: str) -> str:
    return MICROS_PREFIX + column


def to_micros(value: Any) -> int:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return int((when - EPOCH).total_seconds() * 1_000_000)


def from_micros(value: Any) -> Any:
    from datetime import timedelta

    return (EPOCH + timedelta(microseconds=value)).isoformat() if isinstance(value, int) else value


def partition_groups(parts: list[PartitionSlice], rows: int) -> list[list[PartitionSlice]]:
    """Consecutive partitions grouped up to about ``rows`` rows per group (a bigger partition alone)."""
    groups: list[list[PartitionSlice]] = []
    size = 0
    for part in parts:
        if groups and size + part.rows.num_rows <= rows:
            groups[-1].append(part)
            size += part.rows.num_rows
        else:
            groups.append([part])
            size = part.rows.num_rows
    return groups


def pa_concat(tables: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def partitions_of(view: FeatureViewSpec, index: list[Any], parts: list[PartitionSlice]) -> list[str]:
    """The partitions that unexpected rows (identified by keys and timestamp) fall in."""
    import pandas as pd

    found: set[str] = set()
    for row in index:
        stamp = row.get(view.timestamp_field) if isinstance(row, dict) else None
        if stamp is None or pd.isna(stamp):
            continue
        stamp = pd.Timestamp(stamp).to_pydatetime()
        for part in parts:
            if part.start <= stamp < part.end:
                found.add(part.key)
                break
    return sorted(found)
