"""Per-partition feature profiles: row count and, per feature, null fraction, min, max, mean and
distinct count. Numbers only, so the Dagster UI plots them across partitions and runs."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.monitoring.partitioning import split_partitions

if TYPE_CHECKING:
    import pyarrow as pa

ROW_COUNT = "dagster/row_count"
NUMERIC = ("int64", "float64")


def _number(value: object) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def profile_table(view: FeatureViewSpec, rows: pa.Table) -> dict[str, float | int]:
    """One partition's profile, keyed ``<feature>.<statistic>`` (plus ``dagster/row_count``)."""
    import pyarrow.compute as pc

    total = rows.num_rows
    profile: dict[str, float | int] = {ROW_COUNT: total}
    for feature in view.features:
        if feature.name not in rows.column_names:
            continue
        column = rows.column(feature.name)
        dtype = feature.type
        stats: dict[str, object] = {
            "null_fraction": (column.null_count / total) if total else 0.0,
        }
        if total and not dtype.is_array:
            stats["distinct_count"] = pc.count_distinct(column, mode="only_valid").as_py()
        if total and dtype.name in NUMERIC:
            valid = pc.drop_null(column)
            if dtype.name == "float64":
                valid = pc.filter(valid, pc.is_finite(valid))
            if len(valid):
                bounds = pc.min_max(valid).as_py()
                stats["min"], stats["max"] = bounds["min"], bounds["max"]
                stats["mean"] = pc.mean(valid).as_py()
        elif total and dtype.name == "bool":
            stats["mean"] = pc.mean(pc.cast(column, "int64")).as_py()  # the share of true values
        for name, value in stats.items():
            number = _number(value)
            if number is not None:
                profile[f"{feature.name}.{name}"] = round(number, 6) if isinstance(number, float) else number
    return profile


def profile_partitions(
    view: FeatureViewSpec, table: pa.Table, start: datetime, end: datetime
) -> dict[str, dict[str, float | int]]:
    """Each partition's profile, by partition key, for the rows of a materialized window."""
    return {part.key: profile_table(view, part.rows) for part in split_partitions(view, table, start, end)}


class PartitionProfiler:
    """A materialization validator that never fails: it profiles the rows about to be written
    (``profiles`` by partition key), so the profile of a blocked partition is known too. Called once
    per group of whole partitions of a window validated in groups, it gathers every group's profiles."""

    def __init__(self) -> None:
        self.profiles: dict[str, dict[str, float | int]] = {}

    def __call__(self, view: FeatureViewSpec, table: pa.Table, start: datetime, end: datetime) -> list:
        self.profiles.update(profile_partitions(view, table, start, end))
        return []

    def combine(self, view: FeatureViewSpec, chunks: list[list]) -> list:
        return []
