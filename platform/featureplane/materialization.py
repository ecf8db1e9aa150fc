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
materialized partition (see ``featureplane.aggregation``), kept current the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featureplane.engines.base import StagedResult, as_arrow, null_count
from featureplane.locks import file_lock
from featureplane.online_stores.base import EncodedRow, OnlineRow, encode_key
from featureplane.partitions import windows
from featureplane.specs import FeatureViewSpec

if TYPE_CHECKING:
    import pyarrow as pa

    from featureplane.registry.base import WorkspaceState
    from featureplane.runtime import Runtime

Progress = Callable[[str], None]
# A window holding every row: diffing two versions over it compares every key.
ALL_TIME = (datetime(1, 1, 1), datetime(9999, 12, 31))
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


def online_rows(view: FeatureViewSpec, batch: pa.RecordBatch) -> Iterator[OnlineRow]:
    """Online rows from an Arrow batch of (join keys, timestamp, features)."""
    import pyarrow as pa

    keys = [batch.column(k).to_pylist() for k in view.join_key_names]
    stamps = batch.column(view.timestamp_field).cast(pa.timestamp("us")).cast(pa.int64()).to_pylist()
    columns = []
    for feature in view.features:
        values = batch.column(feature.name).to_pylist()
        if feature.type.name == "timestamp":
            values = [None if v is None else v.isoformat() + "Z" for v in values]
        elif feature.type.name == "float64":
            values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
        columns.append(values)
    for i, stamp in enumerate(stamps):
        yield OnlineRow(tuple(k[i] for k in keys), stamp, [c[i] for c in columns])


def _json_value(feature_type: str, column: str) -> str:
    """DuckDB SQL giving a value as the online store stores it (NaN as null, timestamps as ISO-8601 UTC)."""
    if feature_type == "float64":
        return f"CASE WHEN isnan({column}) THEN NULL ELSE {column} END"
    if feature_type == "timestamp":
        return (
            f"CASE WHEN microsecond({column}) % 1000000 = 0 THEN strftime({column}, '%Y-%m-%dT%H:%M:%SZ') "
            f"ELSE strftime({column}, '%Y-%m-%dT%H:%M:%S.%fZ') END"
        )
    return column


def encoded_rows(view: FeatureViewSpec, batch: pa.RecordBatch, con: Any) -> Iterator[EncodedRow]:
    """Rows in storage form, encoded column-wise by DuckDB rather than value by value in Python."""
    import pyarrow as pa

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    values = " || ',' || ".join(
        f"coalesce(to_json({_json_value(f.type.name, q(f.name))})::VARCHAR, 'null')" for f in view.features
    )
    con.register("__fp_batch", pa.Table.from_batches([batch]))
    encoded = con.sql(
        f"SELECT epoch_us({q(view.timestamp_field)}) AS ts, '[' || {values} || ']' AS v FROM __fp_batch"
    ).to_arrow_table()
    con.unregister("__fp_batch")
    keys = zip(*(batch.column(k).to_pylist() for k in view.join_key_names), strict=True)
    for key, stamp, blob in zip(
        keys, encoded.column("ts").to_pylist(), encoded.column("v").to_pylist(), strict=True
    ):
        yield EncodedRow(encode_key(key), stamp, blob.encode())


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
    lock = runtime.config.data_dir / "locks" / (table_id.replace("/", "__") + ".lock")
    with file_lock(lock):
        clock = time.perf_counter()
        say(
            f"{state.name}/{view_name}: computing {len(parts)} partition(s) [{start} .. {end}) on {runtime.engine.name}"
        )
        # An Arrow table, or rows staged where the engine ran when the offline store can copy them there.
        table = runtime.engine.run_for_store(
            view, state.definitions.sources, start, end, runtime.offline_store
        )
        result.rows = table.num_rows
        if not isinstance(table, StagedResult):
            runtime.engine.release_memory()  # the rows are in Arrow now: validation needs the memory
        result.seconds["transform"] = time.perf_counter() - clock

        clock = time.perf_counter()
        # Validators check what is written: an aggregate view's tiles, a plain view's rows.
        checked = view
        if view.is_aggregate:
            from featureplane.aggregation import storage_view

            checked = storage_view(view)
        for validator in validators or []:
            result.checks += validator(checked, as_arrow(table), start, end)
        blocking = [
            c for c in result.checks if getattr(c, "blocking", False) and not getattr(c, "passed", True)
        ]
        if blocking:
            raise ValidationFailed(
                f"feature view {view_name!r}: {len(blocking)} blocking check(s) failed for [{start}, {end}); "
                "nothing was written",
                result.checks,
            )
        _check_keys(view, table)
        if validators:  # hand back what validation's copies (sorted rows, pandas frames) left cached
            _release_arrow_memory()
        result.seconds["validate"] = time.perf_counter() - clock

        if view.is_aggregate:
            from featureplane.aggregation import with_markers

            table = with_markers(view, table, parts)
        clock = time.perf_counter()
        before = runtime.offline_store.version(table_id)
        result.offline_version = runtime.offline_store.write_window(table_id, view, start, end, table)
        del table  # the online update reads the offline store: free the window's rows first
        _release_arrow_memory()
        result.seconds["offline_write"] = time.perf_counter() - clock
        say(
            f"{state.name}/{view_name}: wrote {result.rows:,} row(s) to the offline store (version {result.offline_version})"
        )

        if view.online:
            clock = time.perf_counter()
            sync_online(runtime, state, view, before, start, end, result, say)
            result.seconds["online_write"] = time.perf_counter() - clock
    return result


def sync_online(
    runtime: Runtime,
    state: WorkspaceState,
    view: FeatureViewSpec,
    before: int | None,
    start: datetime | None,
    end: datetime | None,
    result: MaterializationResult,
    say: Progress,
) -> None:
    online = runtime.online_store
    table_id = state.table_id(view.name)
    marker = online.sync_marker(table_id)
    incremental = before is not None and marker == before
    result.online_full_sync = not incremental
    if incremental:
        changes = runtime.offline_store.online_changes(table_id, view, before, start, end)
    else:
        # Compare every key with the version the online store last matched (the marker), if readable.
        try:
            changes = runtime.offline_store.online_changes(table_id, view, marker, *ALL_TIME)
        except Exception:
            if marker is None:
                raise
            changes = runtime.offline_store.online_changes(table_id, view, None, None, None)
    import duckdb

    con = duckdb.connect()
    for batch in changes.upserts:
        result.online_written += online.write_encoded(
            table_id, encoded_rows(view, batch, con), ttl_seconds=view.ttl_seconds
        )
    con.close()
    if changes.deletes:
        result.online_deleted = online.delete(table_id, changes.deletes)
    online.set_sync_marker(table_id, result.offline_version)
    mode = "changed keys" if incremental else "full sync"
    say(
        f"{state.name}/{view.name}: online store updated ({mode}): {result.online_written:,} written, "
        f"{result.online_deleted:,} deleted"
    )
