"""Validating materialized partitions with Great Expectations before anything is written.

``GXValidator`` is a ``materialization.materialize(..., validators=[...])`` validator: it runs a view's
default and declared expectations on the transformation's output and returns one ``CheckResult`` per
expectation. Row-local expectations (not null, between, in set, ...) and the (keys, timestamp)
uniqueness run once over the whole window; the others (uniqueness, aggregates, row counts) per
partition, so a range run means the same as its partitions run one by one. The schema expectation is
checked on the Arrow schema itself, which carries the exact types written to the stores.

Common aggregate expectations (row count, a column's mean, min, max, sum, median, standard deviation,
unique value count or proportion between bounds) do not cost one GX validation per partition: each
partition's statistic is computed the way GX's pandas metric computes it, into a summary frame of one
row per partition, and one GX validation of ``expect_column_values_to_be_between`` with the same bounds
decides which partitions fail. A statistic GX would not compare (null or not finite) sends that
partition through the per-partition path, so the outcome is the one partition-by-partition validation
gives.

GX runs in an ephemeral context (in-memory stores, no analytics, no progress bars): nothing is
written to disk. It is imported on first use, in the process that validates.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from featureplane.monitoring.expectations import ResolvedExpectation, resolve_expectations
from featureplane.monitoring.partitioning import PartitionSlice, split_partitions
from featureplane.specs import FeatureViewSpec

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("featureplane.monitoring")

QUALITY = "quality"
MAX_LISTED = 20


@dataclass
class CheckResult:
    """One expectation's outcome for a materialization window (one or more partitions)."""

    name: str
    expectation: str
    severity: str
    passed: bool
    description: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    column: str | None = None
    partitions: list[str] = field(default_factory=list)
    failing_partitions: list[str] = field(default_factory=list)
    observed_value: Any = None
    element_count: int | None = None
    unexpected_count: int | None = None
    bad_keys: list[dict[str, Any]] = field(default_factory=list)
    unexpected_values: list[Any] = field(default_factory=list)
    error: str | None = None
    builtin: bool = False

    @property
    def blocking(self) -> bool:
        return self.severity == "error"

    @property
    def unexpected_percent(self) -> float | None:
        if self.unexpected_count is None or not self.element_count:
            return None
        return round(100.0 * self.unexpected_count / self.element_count, 4)

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: could not be evaluated: {self.error}"
        verdict = "passed" if self.passed else f"FAILED ({self.severity})"
        parts = [f"{self.name} {verdict}"]
        if self.unexpected_count:
            parts.append(f"{self.unexpected_count} unexpected of {self.element_count} rows")
        if self.observed_value is not None and not self.passed:
            parts.append(f"observed {self.observed_value}")
        if self.failing_partitions:
            parts.append("partitions " + ", ".join(self.failing_partitions[:5]))
        if self.bad_keys and not self.passed:
            parts.append(f"e.g. {self.bad_keys[0]}")
        return "; ".join(parts)

    def metadata(self) -> dict[str, Any]:
        """Plain, JSON-safe details (the Dagster code location turns them into check metadata)."""
        data: dict[str, Any] = {
            "featureplane/kind": QUALITY,
            "expectation": self.expectation,
            "arguments": self.kwargs,
            "severity": self.severity,
            "partitions": _span(self.partitions),
        }
        if self.column:
            data["column"] = self.column
        if self.observed_value is not None:
            data["observed_value"] = self.observed_value
        if self.element_count is not None:
            data["rows"] = self.element_count
        if self.unexpected_count is not None:
            data["unexpected_count"] = self.unexpected_count
        if self.unexpected_percent is not None:
            data["unexpected_percent"] = self.unexpected_percent
        if self.failing_partitions:
            data["failing_partitions"] = ", ".join(self.failing_partitions[:MAX_LISTED]) + (
                f" (+{len(self.failing_partitions) - MAX_LISTED} more)"
                if len(self.failing_partitions) > MAX_LISTED
                else ""
            )
        if self.bad_keys:
            data["bad_keys_sample"] = self.bad_keys
        if self.unexpected_values:
            data["unexpected_values_sample"] = self.unexpected_values
        if self.error:
            data["error"] = self.error
        return data


def _span(keys: Sequence[str]) -> str:
    if not keys:
        return ""
    return keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]} ({len(keys)})"


def plain(value: Any) -> Any:
    """A JSON-safe copy: numpy and pandas scalars to Python, NaN/NA to None, times to ISO strings."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return value if type(value) in (bool, int) else int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    if hasattr(value, "isoformat"):  # pandas Timestamp
        try:
            return value.isoformat()
        except ValueError:  # NaT
            return None
    if hasattr(value, "item"):  # numpy scalar
        try:
            return plain(value.item())
        except (ValueError, TypeError):
            pass
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError, ImportError):
        pass
    return str(value)


# -- Great Expectations ------------------------------------------------------------------------------

_gx_lock = threading.Lock()
_gx_batches: Any = None
_gx_preparing: threading.Thread | None = None


def gx_batch_definition() -> Any:
    """The ephemeral context's whole-dataframe batch definition, created once per process."""
    global _gx_batches
    with _gx_lock:
        if _gx_batches is None:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
            import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

            context = gx.get_context(
                mode="ephemeral",
                project_config=DataContextConfig(
                    store_backend_defaults=InMemoryStoreBackendDefaults(),
                    analytics_enabled=False,
                    progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
                ),
            )
            asset = context.data_sources.add_pandas("featureplane").add_dataframe_asset("partition")
            _gx_batches = asset.add_batch_definition_whole_dataframe("rows")
        return _gx_batches


@dataclass
class _Outcome:
    """One GX evaluation of one expectation on one slice of rows."""

    passed: bool
    observed: Any = None
    element_count: int | None = None
    unexpected_count: int | None = None
    bad_keys: list[dict[str, Any]] = field(default_factory=list)
    unexpected_values: list[Any] = field(default_factory=list)
    failing_partitions: list[str] = field(default_factory=list)
    error: str | None = None


class GXValidator:
    """Validates a view's rows for a window with Great Expectations (see the module docstring)."""

    def __init__(self, *, sample_size: int = 10, batched: bool = True, chunk_rows: int = 500_000) -> None:
        self.sample_size = sample_size
        self.chunk_rows = chunk_rows
        # False: every per-partition expectation gets its own GX validation of each partition.
        self.batched = batched

    def __call__(
        self, view: FeatureViewSpec, table: pa.Table, start: datetime, end: datetime
    ) -> list[CheckResult]:
        expectations = resolve_expectations(view)
        parts = list(split_partitions(view, table, start, end))
        keys = [p.key for p in parts]
        outcomes: dict[str, list[tuple[str | None, _Outcome]]] = {e.name: [] for e in expectations}
        for expectation in expectations:
            if expectation.scope == "schema":
                outcomes[expectation.name].append((None, check_schema(view, table)))
        window = [e for e in expectations if e.scope == "window"]
        chunks = _chunks(parts, self.chunk_rows) if table.num_rows > self.chunk_rows else []
        if sum(p.rows.num_rows for p in parts) != table.num_rows:
            chunks = []  # rows outside every partition (or null timestamps): validate them all at once
        # Row-local expectations give the same answer over consecutive groups of whole partitions (and
        # rows of different partitions never share a timestamp), so long windows are validated a group
        # at a time, bounding the rows held as pandas; ``mostly`` is a share of the whole window.
        chunked = [e for e in window if len(chunks) > 1 and "mostly" not in e.kwargs]
        whole = [e for e in window if e not in chunked]
        if whole:
            for name, outcome in self._run(view, whole, table, start, end, parts).items():
                outcomes[name].append((None, outcome))
        for chunk in chunks if chunked else []:
            rows = pa_concat([p.rows for p in chunk])
            found = self._run(view, chunked, rows, chunk[0].start, chunk[-1].end, chunk)
            for name, outcome in found.items():
                if len(chunk) == 1 and not outcome.passed and not outcome.failing_partitions:
                    outcome.failing_partitions = [chunk[0].key]
                outcomes[name].append((None, outcome))
        per_partition = [e for e in expectations if e.scope == "partition"]
        summarized = [e for e in per_partition if self.batched and _summarizable(e, table)]
        # (expectation name, partition index) pairs the summary cannot decide: validated one by one.
        leftover: set[tuple[str, int]] = set()
        if summarized:
            for name, found in self._run_summary(view, summarized, parts, leftover).items():
                outcomes[name] += found
        individual = [e for e in per_partition if e not in summarized]
        for index, part in enumerate(parts if per_partition else []):
            todo = [
                e
                for e in per_partition
                if (part.rows.num_rows or not e.needs_rows)
                and (e in individual or (e.name, index) in leftover)
            ]
            if todo:
                for name, outcome in self._run(view, todo, part.rows, part.start, part.end, [part]).items():
                    outcomes[name].append((part.key, outcome))
        if leftover:  # back in partition order, as partition-by-partition validation records them
            order = {key: i for i, key in enumerate(keys)}
            for name in {name for name, _ in leftover}:
                outcomes[name].sort(key=lambda item: order.get(item[0] or "", -1))
        return [self._merge(e, outcomes[e.name], keys) for e in expectations]

    def _run_summary(
        self,
        view: FeatureViewSpec,
        expectations: list[ResolvedExpectation],
        parts: list[PartitionSlice],
        leftover: set[tuple[str, int]],
    ) -> dict[str, list[tuple[str | None, _Outcome]]]:
        """Per-partition aggregate expectations in one GX validation of a summary frame (one row per
        partition, one statistic column per expectation). Partitions whose statistic GX would not compare
        are added to ``leftover``; an expectation GX cannot evaluate on the summary goes there whole."""
        import great_expectations as gx
        import pandas as pd
        import pyarrow as pa

        from featureplane.offline_stores.base import to_pandas

        columns = sorted({e.kwargs["column"] for e in expectations if "column" in e.kwargs})
        rows = pa.concat_tables([p.rows.select(columns) for p in parts]) if columns else None
        frame = to_pandas(rows) if rows is not None else None
        bounds = [0]
        for part in parts:
            bounds.append(bounds[-1] + part.rows.num_rows)
        summary: dict[str, Any] = {PARTITION_COLUMN: [p.key for p in parts]}
        observed: dict[str, list[Any]] = {}
        suite = gx.ExpectationSuite(name=f"{view.name}_partitions")
        for n, expectation in enumerate(expectations):
            statistic = SUMMARY_STATISTICS[expectation.type]
            values: list[Any] = []
            for index, part in enumerate(parts):
                if expectation.needs_rows and not part.rows.num_rows:
                    values.append(None)
                    continue
                column = None
                if "column" in expectation.kwargs and frame is not None:
                    column = frame[expectation.kwargs["column"]].iloc[bounds[index] : bounds[index + 1]]
                value = statistic(column, part.rows.num_rows)
                if not _comparable(value):
                    leftover.add((expectation.name, index))
                    value = None
                values.append(value)
            column_name = f"{SUMMARY_PREFIX}{n}"
            observed[expectation.name] = values
            summary[column_name] = _summary_column(values)
            kwargs = {k: v for k, v in expectation.kwargs.items() if k in BOUND_ARGUMENTS}
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column=column_name, **kwargs, meta={"featureplane": expectation.name}
                )
            )
        batches = gx_batch_definition()
        with _gx_lock:
            validation = batches.get_batch(batch_parameters={"dataframe": pd.DataFrame(summary)}).validate(
                suite,
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": [PARTITION_COLUMN],
                    "include_unexpected_rows": False,
                },
            )
        found: dict[str, list[tuple[str | None, _Outcome]]] = {}
        for item in validation.results:
            name = (item.expectation_config.meta or {}).get("featureplane")
            if (item.exception_info or {}).get("raised_exception"):
                leftover.update((name, index) for index in range(len(parts)))
                continue
            failing = {
                row.get(PARTITION_COLUMN)
                for row in (item.result or {}).get("unexpected_index_list") or []
                if isinstance(row, dict)
            }
            found[name] = [
                (part.key, _Outcome(passed=part.key not in failing, observed=plain(value)))
                for index, (part, value) in enumerate(zip(parts, observed[name], strict=True))
                if value is not None and (name, index) not in leftover
            ]
        return found

    def _merge(
        self, expectation: ResolvedExpectation, outcomes: list[tuple[str | None, _Outcome]], keys: list[str]
    ) -> CheckResult:
        result = CheckResult(
            name=expectation.name,
            expectation=expectation.type,
            severity=expectation.severity,
            passed=all(o.passed for _, o in outcomes),
            description=expectation.describe(),
            kwargs=plain(expectation.kwargs),
            column=expectation.column,
            partitions=keys,
            builtin=expectation.builtin,
        )
        observed: dict[str, Any] = {}
        for key, outcome in outcomes:
            if outcome.element_count is not None:
                result.element_count = (result.element_count or 0) + outcome.element_count
            if outcome.unexpected_count is not None:
                result.unexpected_count = (result.unexpected_count or 0) + outcome.unexpected_count
            room = self.sample_size - len(result.bad_keys)
            result.bad_keys += outcome.bad_keys[: max(room, 0)]
            room = self.sample_size - len(result.unexpected_values)
            result.unexpected_values += outcome.unexpected_values[: max(room, 0)]
            failing = outcome.failing_partitions or ([key] if key and not outcome.passed else [])
            result.failing_partitions += [k for k in failing if k not in result.failing_partitions]
            if outcome.error and not result.error:
                result.error = outcome.error
            if outcome.observed is not None:
                observed[key or ""] = outcome.observed
        if len(observed) == 1:
            result.observed_value = next(iter(observed.values()))
        elif observed:
            failing = [k for k in observed if k in result.failing_partitions] or list(observed)
            result.observed_value = {k: observed[k] for k in failing[:MAX_LISTED]}
        result.failing_partitions.sort()
        return result

    def _run(
        self,
        view: FeatureViewSpec,
        expectations: list[ResolvedExpectation],
        rows: pa.Table,
        start: datetime,
        end: datetime,
        parts: list[PartitionSlice],
    ) -> dict[str, _Outcome]:
        """One GX validation of ``expectations`` over ``rows``."""
        import great_expectations as gx
        import pandas as pd
        import pyarrow as pa
        from great_expectations.expectations.registry import get_expectation_impl

        from featureplane.offline_stores.base import to_pandas

        batches = gx_batch_definition()
        suite = gx.ExpectationSuite(name=f"{view.name}")
        outcomes: dict[str, _Outcome] = {}
        as_numbers: set[str] = set()
        for expectation in expectations:
            try:
                kind = get_expectation_impl(expectation.type)
                kwargs = self._arguments(view, expectation, start, end, as_numbers)
                suite.add_expectation(kind(**kwargs, meta={"featureplane": expectation.name}))
            except Exception as exc:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                outcomes[expectation.name] = _Outcome(
                    passed=False, error=f"invalid expectation {expectation.describe()}: {message}"
                )
        if not suite.expectations:
            return outcomes
        index_columns = [*view.join_key_names, view.timestamp_field]
        frame = to_pandas(rows)
        for column in as_numbers:
            micros = rows.column(column).cast(pa.timestamp("us")).cast(pa.int64())
            frame[_micros(column)] = micros.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        # GX compares values one at a time (a Python call per row) unless the column has a plain numpy
        # dtype: integer columns without nulls leave pandas' nullable Int64 for int64, same values.
        ranged = {
            getattr(e, "column", None)
            for e in suite.expectations
            if e.expectation_type == "expect_column_values_to_be_between"
        }
        for column in ranged:
            dtype = frame[column].dtype if column in frame else None
            if isinstance(dtype, pd.Int64Dtype) and not frame[column].hasnans:
                frame[column] = frame[column].astype("int64")
        with _gx_lock:
            validation = batches.get_batch(batch_parameters={"dataframe": frame}).validate(
                suite,
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": index_columns,
                    "partial_unexpected_count": self.sample_size,
                    "include_unexpected_rows": False,
                },
            )
        for item in validation.results:
            name = (item.expectation_config.meta or {}).get("featureplane")
            outcomes[name] = outcome = self._outcome(view, item, parts, rows.num_rows)
            if item.expectation_config.kwargs.get("column", "").startswith(MICROS_PREFIX):
                outcome.unexpected_values = [_from_micros(v) for v in outcome.unexpected_values]
                outcome.bad_keys = [
                    {k: v for k, v in key.items() if not k.startswith(MICROS_PREFIX)}
                    for key in outcome.bad_keys
                ]
        return outcomes

    def _arguments(
        self,
        view: FeatureViewSpec,
        expectation: ResolvedExpectation,
        start: datetime,
        end: datetime,
        as_numbers: set[str],
    ) -> dict[str, Any]:
        """GX arguments; a range check on a timestamp column runs on its microseconds since the epoch
        (GX compares pandas datetimes one value at a time, about 100 times slower)."""
        kwargs = dict(expectation.kwargs)
        if expectation.tags.get("window_bounds"):
            kwargs.update(min_value=start, max_value=end, strict_max=True)
        timestamps = {view.timestamp_field} | {f.name for f in view.features if f.type.name == "timestamp"}
        column = kwargs.get("column")
        if column in timestamps and expectation.type == "expect_column_values_to_be_between":
            for bound in ("min_value", "max_value"):
                if kwargs.get(bound) is not None:
                    kwargs[bound] = _to_micros(kwargs[bound])
            as_numbers.add(column)
            kwargs["column"] = _micros(column)
        return kwargs

    def _outcome(self, view: FeatureViewSpec, item: Any, parts: list[PartitionSlice], rows: int) -> _Outcome:
        info = item.exception_info or {}
        if info.get("raised_exception"):
            message = str(info.get("exception_message") or "error").strip().splitlines()[0]
            return _Outcome(passed=False, error=message)
        result = item.result or {}
        outcome = _Outcome(passed=bool(item.success), observed=plain(result.get("observed_value")))
        if "unexpected_count" in result:
            outcome.element_count = int(result.get("element_count") or rows)
            outcome.unexpected_count = int(result.get("unexpected_count") or 0)
            outcome.bad_keys = [plain(k) for k in (result.get("partial_unexpected_index_list") or [])]
            outcome.unexpected_values = [plain(v) for v in (result.get("partial_unexpected_list") or [])]
            outcome.bad_keys = outcome.bad_keys[: self.sample_size]
            outcome.unexpected_values = outcome.unexpected_values[: self.sample_size]
            if not item.success and len(parts) > 1:
                outcome.failing_partitions = _partitions_of(
                    view, result.get("unexpected_index_list") or [], parts
                )
        return outcome


# -- aggregate expectations over a per-partition summary ---------------------------------------------

PARTITION_COLUMN = "__fp_partition"
SUMMARY_PREFIX = "__fp_statistic_"
BOUND_ARGUMENTS = frozenset({"min_value", "max_value", "strict_min", "strict_max"})


def _unique_proportion(column: Any, rows: int) -> float:
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
    "expect_column_proportion_of_unique_values_to_be_between": _unique_proportion,
}
NUMERIC_ONLY = frozenset(SUMMARY_STATISTICS) - {
    "expect_table_row_count_to_be_between",
    "expect_column_unique_value_count_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between",
}


def _summarizable(expectation: ResolvedExpectation, table: pa.Table) -> bool:
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


def _comparable(value: Any) -> bool:
    """A statistic GX compares with the bounds (GX fails a null or NaN one; infinities go the per-
    partition way too, so their observed value is the one GX reports)."""
    import pandas as pd

    if value is None or value is pd.NA:
        return False
    try:
        return math.isfinite(value)
    except (TypeError, ValueError, OverflowError):
        return False


def _summary_column(values: list[Any]) -> Any:
    """The statistics as one column: integers stay exact (nullable Int64), the rest float64."""
    import pandas as pd

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) or (hasattr(v, "dtype") and v.dtype.kind in "iu") for v in present):
        return pd.array([None if v is None else int(v) for v in values], dtype="Int64")
    return pd.array([None if v is None else float(v) for v in values], dtype="float64")


MICROS_PREFIX = "__fp_micros__"
EPOCH = datetime(1970, 1, 1)


def _micros(column: str) -> str:
    return MICROS_PREFIX + column


def _to_micros(value: Any) -> int:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return int((when - EPOCH).total_seconds() * 1_000_000)


def _from_micros(value: Any) -> Any:
    from datetime import timedelta

    return (EPOCH + timedelta(microseconds=value)).isoformat() if isinstance(value, int) else value


def _chunks(parts: list[PartitionSlice], rows: int) -> list[list[PartitionSlice]]:
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


def _partitions_of(view: FeatureViewSpec, index: list[Any], parts: list[PartitionSlice]) -> list[str]:
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


def check_schema(view: FeatureViewSpec, table: pa.Table) -> _Outcome:
    """The output's columns, order and Arrow types against the declaration."""
    from featureplane.types import Timestamp, to_arrow

    declared = [(k.name, k.type) for k in view.join_keys]
    declared.append((view.timestamp_field, Timestamp))
    declared += [(f.name, f.type) for f in view.features]
    actual = {f.name: f.type for f in table.schema}
    problems = []
    if table.column_names != [name for name, _ in declared]:
        problems.append(
            f"columns are {', '.join(table.column_names)}; declared {', '.join(n for n, _ in declared)}"
        )
    for name, dtype in declared:
        if name in actual and actual[name] != to_arrow(dtype):
            problems.append(f"{name} is {actual[name]}, declared {dtype!r}")
    observed = ", ".join(f"{f.name} {f.type}" for f in table.schema)
    return _Outcome(
        passed=not problems,
        observed="; ".join(problems) if problems else observed,
        element_count=table.num_rows,
    )


def quality_validators(config: Any = None) -> list[GXValidator]:
    """The validators materialization runs, from ``monitoring.quality`` in featureplane.yaml.

    Great Expectations takes seconds to import: it starts importing in the background now, while the
    transformation runs on the engine (which releases the GIL), instead of after it."""
    from featureplane.monitoring.settings import MonitoringSettings

    settings = MonitoringSettings.from_config(config)
    if not settings.quality_enabled:
        return []
    prepare_gx()
    return [GXValidator(sample_size=settings.bad_key_sample)]


def prepare_gx() -> None:
    """Import Great Expectations and create its context in a background thread (once per process)."""
    global _gx_preparing
    with _gx_lock:
        if _gx_batches is not None or _gx_preparing is not None:
            return
        import pandas  # noqa: F401 - imported here first, so the two threads never import it at once
        import pyarrow  # noqa: F401

        def prepare() -> None:
            try:
                gx_batch_definition()
            except Exception:  # validation imports it again and reports what fails
                log.debug("preparing Great Expectations failed", exc_info=True)

        _gx_preparing = threading.Thread(target=prepare, name="featureplane-gx-import", daemon=True)
        _gx_preparing.start()
