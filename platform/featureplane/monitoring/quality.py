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
import os
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.monitoring.expectations import ResolvedExpectation, resolve_expectations
from featureplane.monitoring.partitioning import PartitionSlice, split_partitions

if TYPE_CHECKING:
    import pyarrow as pa

from featureplane.monitoring.checks import (
    MAX_LISTED,
    CheckResult,
    Outcome,
    check_schema,
    combine_results,
    plain,
)
from featureplane.monitoring.summaries import (
    BOUND_ARGUMENTS,
    MICROS_PREFIX,
    PARTITION_COLUMN,
    SUMMARY_PREFIX,
    SUMMARY_STATISTICS,
    comparable,
    from_micros,
    micros_column,
    pa_concat,
    partition_groups,
    partitions_of,
    summarizable,
    summary_column,
    to_micros,
)

log = logging.getLogger("featureplane.monitoring")


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
        outcomes: dict[str, list[tuple[str | None, Outcome]]] = {e.name: [] for e in expectations}
        for expectation in expectations:
            if expectation.scope == "schema":
                outcomes[expectation.name].append((None, check_schema(view, table)))
        window = [e for e in expectations if e.scope == "window"]
        chunks = partition_groups(parts, self.chunk_rows) if table.num_rows > self.chunk_rows else []
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
        summarized = [e for e in per_partition if self.batched and summarizable(e, table)]
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

    def chunkable(self, view: FeatureViewSpec) -> bool:
        """Whether a window may be validated a group of whole partitions at a time (``combine``): not
        when an expectation over the whole window is ``mostly`` (a share of all its rows)."""
        return not any(e.scope == "window" and "mostly" in e.kwargs for e in resolve_expectations(view))

    def combine(self, view: FeatureViewSpec, chunks: list[list[CheckResult]]) -> list[CheckResult]:
        """The window's results from its groups' results (in time order)."""
        return combine_results(chunks, self.sample_size)

    def _run_summary(
        self,
        view: FeatureViewSpec,
        expectations: list[ResolvedExpectation],
        parts: list[PartitionSlice],
        leftover: set[tuple[str, int]],
    ) -> dict[str, list[tuple[str | None, Outcome]]]:
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
                if not comparable(value):
                    leftover.add((expectation.name, index))
                    value = None
                values.append(value)
            column_name = f"{SUMMARY_PREFIX}{n}"
            observed[expectation.name] = values
            summary[column_name] = summary_column(values)
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
        found: dict[str, list[tuple[str | None, Outcome]]] = {}
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
                (part.key, Outcome(passed=part.key not in failing, observed=plain(value)))
                for index, (part, value) in enumerate(zip(parts, observed[name], strict=True))
                if value is not None and (name, index) not in leftover
            ]
        return found

    def _merge(
        self, expectation: ResolvedExpectation, outcomes: list[tuple[str | None, Outcome]], keys: list[str]
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
    ) -> dict[str, Outcome]:
        """One GX validation of ``expectations`` over ``rows``."""
        import great_expectations as gx
        import pandas as pd
        import pyarrow as pa
        from great_expectations.expectations.registry import get_expectation_impl

        from featureplane.offline_stores.base import to_pandas

        batches = gx_batch_definition()
        suite = gx.ExpectationSuite(name=f"{view.name}")
        outcomes: dict[str, Outcome] = {}
        as_numbers: set[str] = set()
        for expectation in expectations:
            try:
                kind = get_expectation_impl(expectation.type)
                kwargs = self._arguments(view, expectation, start, end, as_numbers)
                suite.add_expectation(kind(**kwargs, meta={"featureplane": expectation.name}))
            except Exception as exc:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                outcomes[expectation.name] = Outcome(
                    passed=False, error=f"invalid expectation {expectation.describe()}: {message}"
                )
        if not suite.expectations:
            return outcomes
        index_columns = [*view.join_key_names, view.timestamp_field]
        frame = to_pandas(rows)
        for column in as_numbers:
            micros = rows.column(column).cast(pa.timestamp("us")).cast(pa.int64())
            frame[micros_column(column)] = micros.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
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
                outcome.unexpected_values = [from_micros(v) for v in outcome.unexpected_values]
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
                    kwargs[bound] = to_micros(kwargs[bound])
            as_numbers.add(column)
            kwargs["column"] = micros_column(column)
        return kwargs

    def _outcome(self, view: FeatureViewSpec, item: Any, parts: list[PartitionSlice], rows: int) -> Outcome:
        info = item.exception_info or {}
        if info.get("raised_exception"):
            message = str(info.get("exception_message") or "error").strip().splitlines()[0]
            return Outcome(passed=False, error=message)
        result = item.result or {}
        outcome = Outcome(passed=bool(item.success), observed=plain(result.get("observed_value")))
        if "unexpected_count" in result:
            outcome.element_count = int(result.get("element_count") or rows)
            outcome.unexpected_count = int(result.get("unexpected_count") or 0)
            outcome.bad_keys = [plain(k) for k in (result.get("partial_unexpected_index_list") or [])]
            outcome.unexpected_values = [plain(v) for v in (result.get("partial_unexpected_list") or [])]
            outcome.bad_keys = outcome.bad_keys[: self.sample_size]
            outcome.unexpected_values = outcome.unexpected_values[: self.sample_size]
            if not item.success and len(parts) > 1:
                outcome.failing_partitions = partitions_of(
                    view, result.get("unexpected_index_list") or [], parts
                )
        return outcome


def quality_validators(config: Any = None) -> list[GXValidator]:
    """The validators materialization runs, from ``monitoring.quality`` in featureplane.yaml.

    Great Expectations takes seconds to import: it starts importing in the background now, while the
    transformation runs on the engine (which releases the GIL), instead of after it."""
    from featureplane.config import MonitoringSettings

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
