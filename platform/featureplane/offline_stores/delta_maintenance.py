"""Keeping a view's Delta table small and bounded: compaction, vacuum and retention.

Every materialization commits a few small files, so a table written daily for years reads thousands
of them. ``compact`` rewrites each partition's small files into large ones (Delta's OPTIMIZE, optionally
Z-ordered by the join keys so a point-in-time join's key ranges skip whole files) and checkpoints the
log; the rows and their values do not change. ``vacuum`` deletes the files no recent version reads.
``delete_before`` enforces a view's ``offline_retention``. Each is one Delta commit (vacuum writes none),
so a reader always sees a whole version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.base import TableStats

MIN_VACUUM_HOURS = 0


def table_stats(table: Any) -> TableStats:
    """Files and bytes the table's current version reads (from the log, no file is opened)."""
    actions = table.get_add_actions(flatten=True)
    sizes = actions.column("size_bytes").to_pylist() if actions.num_rows else []
    return TableStats(files=len(sizes), bytes=int(sum(sizes)))


def compact(table: Any, view: FeatureViewSpec, *, z_order: bool = False) -> dict[str, Any]:
    """OPTIMIZE: compaction, or Z-ordering by the join keys, then a checkpoint of the log (readers
    then replay one Parquet file instead of every commit's JSON)."""
    metrics = table.optimize.z_order(view.join_key_names) if z_order else table.optimize.compact()
    table.create_checkpoint()
    return dict(metrics)


def vacuum(table: Any, *, retention_hours: int, dry_run: bool = False) -> list[str]:
    """Files that no version newer than ``retention_hours`` reads: deleted (or only listed), and the
    log entries older than that with them. Delta refuses a retention under its own default (a week)
    unless told: featureplane passes its setting through, so the caller owns the choice."""
    if retention_hours < MIN_VACUUM_HOURS:
        raise ValueError(f"vacuum retention_hours must be at least {MIN_VACUUM_HOURS}, got {retention_hours}")
    files = table.vacuum(
        retention_hours=int(retention_hours), dry_run=dry_run, enforce_retention_duration=False
    )
    return list(files)


def delete_before(table: Any, view: FeatureViewSpec, cutoff: datetime, bucket: int) -> int:
    """DELETE the rows before ``cutoff`` (``bucket``: the cutoff's ``_partition``, which prunes the
    partitions that cannot hold such rows). An aggregate view keeps its partition markers (rows with
    null join keys), which only say which partitions were materialized."""
    ts = view.timestamp_field
    predicate = f"_partition <= {int(bucket)} AND {ts} < '{cutoff.isoformat()}'"
    if view.is_aggregate:
        predicate += f" AND {view.join_key_names[0]} IS NOT NULL"
    metrics = table.delete(predicate)
    return int(metrics.get("num_deleted_rows", 0) or 0)
