"""Materializing a feature view for a window ``[start, end)``: one partition or a whole range.

1. Run the transformation on the engine for the window (one query for a range of partitions).
2. Validate the rows; a blocking failure writes nothing anywhere.
3. Replace the window in the offline store in one commit.
4. Bring the online store to the offline store's latest rows for the keys the window touched.

Step 4 is driven by a sync marker: the online store records the offline version it last matched. When
the marker equals the version before step 3, only keys whose latest row changed between the two
versions are written. After a crash between steps 3 and 4 the marker is older: every key is compared
between the marker's version and now, so changed rows are written and vanished keys deleted. Without a
marker (first run, online turned on) every key's latest row is written. A rerun therefore repairs any
interrupted run, and reruns and out-of-order backfills keep the online store equal to the as-of-now
projection of the offline store.

Aggregate views store tiles; their online rows are the window values as of the end of the latest
materialized partition (see ``featureplane.compute.aggregation``), kept current the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featureplane.compute.base import StagedResult, as_arrow, null_count
from featureplane.config import MonitoringSettings
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.materialization.online_sync import Progress, staged_latest_rows, sync_online
from featureplane.materialization.partitions import windows
from featureplane.util.locks import file_lock

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from featureplane.registry.base import WorkspaceState
    from featureplane.runtime import Runtime

Validator = Callable[[FeatureViewSpec, "pa.Table", datetime, datetime], list[Any]]


class MaterializationError(RuntimeError):
    pass


class ValidationFailed(MaterializationError):
    """Blocking data-quality checks failed; nothing was written."""

    def __init__(self, message: str, results: list[Any]) -> None:
        super().__init__(message)
        self.results = results


@dataclass
class MaterializationResult:
    workspace: str
    view: str
    table_id: str
    start: datetime
    end: datetime
    partitions: int
    rows: int
    offline_version: int | None
    online_written: int = 0
    online_deleted: int = 0
    online_full_sync: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    checks: list[Any] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "partitions": self.partitions,
            "window_start": self.start.isoformat(),
            "window_end": self.end.isoformat(),
            "table_id": self.table_id,
            "offline_version": self.offline_version if self.offline_version is not None else -1,
            "online_rows_written": self.online_written,
            "online_rows_deleted": self.online_deleted,
            "online_full_sync": self.online_full_sync,
            **{f"seconds_{k}": round(v, 3) for k, v in self.seconds.items()},
        }


def _release_arrow_memory() -> None:
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _check_keys(view: FeatureViewSpec, table: pa.Table | StagedResult) -> None:
    for key in view.join_key_names:
        nulls = null_count(table, key)
        if nulls:
            raise ValidationFailed(
                f"feature view {view.name!r}: {nulls} output row(s) have a null join key {key!r}; nothing was written",
                [],
            )


def validate(
    validators: list[Validator],
    view: FeatureViewSpec,
    table: pa.Table | StagedResult,
    parts: list[tuple[datetime, datetime]],
    chunk_rows: int,
) -> list[Any]:
    """Every validator's results for the window. Staged rows are validated a group of whole partitions
    of about ``chunk_rows`` rows at a time (``StagedResult.chunks``) when every validator can combine
    its groups' results into the whole window's (a ``combine(view, results)`` method, and
    ``chunkable(view)`` true); otherwise the rows are validated at once."""
    if not validators:
        return []
    start, end = parts[0][0], parts[-1][1]
    chunked = isinstance(table, StagedResult) and all(
        callable(getattr(v, "combine", None)) and getattr(v, "chunkable", lambda _: True)(view)
        for v in validators
    )
    if not chunked:
        rows = as_arrow(table)
        return [check for validator in validators for check in validator(view, rows, start, end)]
    found: list[list[list[Any]]] = [[] for _ in validators]
    for low, high, rows in table.chunks(view, parts, chunk_rows):
        for results, validator in zip(found, validators, strict=True):
            results.append(validator(view, rows, low, high))
        del rows
        _release_arrow_memory()
    return [
        check
        for results, validator in zip(found, validators, strict=True)
        for check in validator.combine(view, results)  # type: ignore[attr-defined]
    ]


def view_lock(runtime: Runtime, table_id: str) -> Path:
    """The file whose lock serialises the writers of one view's data (materialization, maintenance)."""
    return runtime.config.data_dir / "locks" / (table_id.replace("/", "__") + ".lock")


def materialize(
    runtime: Runtime,
    state: WorkspaceState,
    view_name: str,
    start: datetime,
    end: datetime,
    *,
    progress: Progress | None = None,
    validators: list[Validator] | None = None,
) -> MaterializationResult:
    """Materialize ``view_name`` of a live workspace for ``[start, end)`` (whole partitions)."""
    say = progress or (lambda message: None)
    view = state.feature_view(view_name)
    if not state.live:
        raise MaterializationError(
            f"workspace {state.name!r} is a development workspace: its feature views are never materialized "
            "(use from_source=True or run_transformation() to compute them ad hoc)"
        )
    if not view.is_batch:
        raise MaterializationError(
            f"feature view {view_name!r} is a {view.kind} view; only batch views materialize"
        )
    parts = list(windows(view, start, end))
    if not parts or parts[0][0] != start or parts[-1][1] != end:
        raise MaterializationError(
            f"[{start}, {end}) is not a whole number of {view_name!r}'s partitions "
            f"(batch_schedule {view.schedule}, starting {view.start})"
        )
    table_id = state.table_id(view_name)
    result = MaterializationResult(
        workspace=state.name,
        view=view_name,
        table_id=table_id,
        start=start,
        end=end,
        partitions=len(parts),
        rows=0,
        offline_version=None,
    )
    staged: list[StagedResult] = []
    with file_lock(view_lock(runtime, table_id)):
        try:
            _materialize_window(runtime, state, view, parts, result, say, validators, staged)
        finally:
            for stage in staged:
                stage.close()
    return result


def _materialize_window(
    runtime: Runtime,
    state: WorkspaceState,
    view: FeatureViewSpec,
    parts: list[tuple[datetime, datetime]],
    result: MaterializationResult,
    say: Progress,
    validators: list[Validator] | None,
    staged: list[StagedResult],
) -> None:
    """Steps 1-4 of the module docstring under the view's lock; staged rows are added to ``staged``
    (the caller drops them)."""
    start, end, table_id = result.start, result.end, result.table_id
    clock = time.perf_counter()
    say(
        f"{state.name}/{view.name}: computing {len(parts)} partition(s) [{start} .. {end}) on {runtime.engine.name}"
    )
    # An Arrow table, or rows staged where the engine ran: when the offline store can copy them
    # there, or when the engine keeps them in a local table that spills to disk.
    engine, sources = runtime.engine, state.definitions.sources
    table: pa.Table | StagedResult
    if runtime.offline_store.accepts_staged_from(engine) or engine.stages_locally(view):
        table = engine.stage_transformation(view, sources, start, end)
        staged.append(table)
    else:
        table = engine.materialization_rows(view, sources, start, end)
    result.rows = table.num_rows
    if not isinstance(table, StagedResult):
        runtime.engine.release_memory()  # the rows are in Arrow now: validation needs the memory
    result.seconds["transform"] = time.perf_counter() - clock

    clock = time.perf_counter()
    # Validators check what is written: an aggregate view's tiles, a plain view's rows.
    checked = view
    if view.is_aggregate:
        from featureplane.compute.aggregation.tiles import storage_view

        checked = storage_view(view)
    chunk_rows = MonitoringSettings.from_config(runtime.config).quality_chunk_rows
    result.checks += validate(validators or [], checked, table, parts, chunk_rows)
    blocking = [c for c in result.checks if getattr(c, "blocking", False) and not getattr(c, "passed", True)]
    if blocking:
        raise ValidationFailed(
            f"feature view {view.name!r}: {len(blocking)} blocking check(s) failed for [{start}, {end}); "
            "nothing was written",
            result.checks,
        )
    _check_keys(view, table)
    if validators:  # hand back what validation's copies (sorted rows, pandas frames) left cached
        _release_arrow_memory()
    result.seconds["validate"] = time.perf_counter() - clock

    if view.is_aggregate:
        from featureplane.compute.aggregation.tiles import with_markers

        table = with_markers(view, table, parts)
    before = runtime.offline_store.version(table_id)
    staged_latest = None
    if (
        view.online
        and before is None
        and (not isinstance(table, StagedResult) or table.local_duckdb() is not None)
        and runtime.online_store.sync_marker(table_id) is None
    ):
        # A first backfill: the online rows follow from these rows alone; no read-back needed.
        clock = time.perf_counter()
        staged_latest = staged_latest_rows(runtime, view, table)
        result.seconds["online_write"] = time.perf_counter() - clock
    clock = time.perf_counter()
    result.offline_version = runtime.offline_store.write_window(table_id, view, start, end, table)
    del table  # the online update may read the offline store: free the window's rows first
    _release_arrow_memory()
    result.seconds["offline_write"] = time.perf_counter() - clock
    say(
        f"{state.name}/{view.name}: wrote {result.rows:,} row(s) to the offline store (version {result.offline_version})"
    )

    if view.online:
        clock = time.perf_counter()
        synced = sync_online(
            runtime, state, view, before, start, end, result.offline_version, say, staged_latest
        )
        result.online_written, result.online_deleted = synced.written, synced.deleted
        result.online_full_sync = synced.full_sync
        result.seconds["online_write"] = result.seconds.get("online_write", 0.0) + time.perf_counter() - clock
