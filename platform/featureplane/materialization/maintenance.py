"""Maintenance of a workspace's stored data: what the daily maintenance job runs for each view.

For a view with an offline table: enforce ``offline_retention`` (delete rows older than it), compact
the table (optionally Z-ordered by the join keys) and vacuum files past the vacuum retention; for a
view online: sweep the rows that reads no longer serve (past the ttl, past the offline retention,
or, for windowed aggregates, past the longest window). Files and bytes before and after are reported
(the Dagster job records them as asset observations). ``docs/data-lifecycle.md`` explains the choices.

Compaction does not change rows, and the sweep removes online exactly the keys whose rows retention
removed offline, so after both the online store again matches the offline table's new version: the
sync marker advances with it (when it matched before), and the next materialization's online update
stays incremental rather than comparing every key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from featureplane.compute.aggregation.online import online_expiry_seconds
from featureplane.definitions.specs import FeatureViewSpec

if TYPE_CHECKING:
    from featureplane.registry.base import WorkspaceState
    from featureplane.runtime import Runtime

DEFAULT_VACUUM_HOURS = 168  # Delta's own default: a week of versions stays readable (time travel)


@dataclass(frozen=True)
class MaintenanceOptions:
    z_order: bool = True
    vacuum_retention_hours: int = DEFAULT_VACUUM_HOURS
    dry_run: bool = False  # report what vacuum and retention would delete; change nothing

    def __post_init__(self) -> None:
        if self.vacuum_retention_hours < 0:
            raise ValueError(f"vacuum_retention_hours must be 0 or more, got {self.vacuum_retention_hours}")


@dataclass
class ViewMaintenance:
    """What maintenance did to one view (``None``: not applicable to this view or store)."""

    view: str
    table_id: str
    files_before: int | None = None
    bytes_before: int | None = None
    files_after: int | None = None
    bytes_after: int | None = None
    retention_cutoff: datetime | None = None
    rows_deleted: int | None = None
    compaction: dict[str, Any] = field(default_factory=dict)
    vacuumed_files: list[str] = field(default_factory=list)
    online_expiry: timedelta | None = None
    online_rows_expired: int | None = None
    dry_run: bool = False

    def metadata(self) -> dict[str, Any]:
        """Plain values for an asset observation (None left out)."""
        values: dict[str, Any] = {
            "table_id": self.table_id,
            "files_before": self.files_before,
            "bytes_before": self.bytes_before,
            "files_after": self.files_after,
            "bytes_after": self.bytes_after,
            "offline_rows_deleted": self.rows_deleted,
            "retention_cutoff": self.retention_cutoff.isoformat() + "Z" if self.retention_cutoff else None,
            "files_compacted": self.compaction.get("numFilesRemoved"),
            "files_written_by_compaction": self.compaction.get("numFilesAdded"),
            "vacuumed_files": len(self.vacuumed_files) if self.files_before is not None else None,
            "online_rows_expired": self.online_rows_expired,
            "online_expiry_hours": self.online_expiry.total_seconds() / 3600 if self.online_expiry else None,
            "dry_run": self.dry_run,
        }
        return {k: v for k, v in values.items() if v is not None}

    def summary(self) -> str:
        parts = []
        if self.files_before is not None:
            parts.append(
                f"{self.files_before} file(s), {self.bytes_before:,} bytes -> "
                f"{self.files_after} file(s), {self.bytes_after:,} bytes"
            )
        if self.rows_deleted is not None:
            parts.append(f"{self.rows_deleted:,} row(s) older than {self.retention_cutoff} deleted")
        if self.vacuumed_files:
            verb = "would be vacuumed" if self.dry_run else "vacuumed"
            parts.append(f"{len(self.vacuumed_files)} file(s) {verb}")
        if self.online_rows_expired is not None:
            parts.append(f"{self.online_rows_expired:,} expired online row(s) removed")
        return f"{self.view}: " + ("; ".join(parts) or "nothing to maintain")


def online_max_age(view: FeatureViewSpec) -> timedelta | None:
    """How old an online row may be before a sweep removes it: the shorter of its expiry (ttl, or the
    longest window of an aggregate view) and the offline retention (a key whose latest row retention
    removed offline has no row online either). None: online rows never expire."""
    ages = [online_expiry_seconds(view)]
    if not view.is_aggregate:
        ages.append(view.offline_retention_seconds)
    known = [a for a in ages if a]
    return timedelta(seconds=min(known)) if known else None


def retention_cutoff(view: FeatureViewSpec, now: datetime) -> datetime | None:
    """The time before which ``offline_retention`` deletes a view's rows (or tiles) at ``now``."""
    retention = view.offline_retention
    return None if retention is None else now - retention


def maintain_view(
    runtime: Runtime,
    state: WorkspaceState,
    view: FeatureViewSpec,
    options: MaintenanceOptions = MaintenanceOptions(),
    now: datetime | None = None,
) -> ViewMaintenance:
    """Retention, compaction and vacuum of a view's offline table, then the sweep of its online rows."""
    from featureplane.materialization.materialize import view_lock
    from featureplane.util.locks import file_lock

    now = _naive_utc(now or datetime.now(UTC))
    table_id = state.table_id(view.name)
    with file_lock(view_lock(runtime, table_id)):  # never interleaved with a run writing this view
        return _maintain(runtime, view, table_id, options, now)


def _maintain(
    runtime: Runtime, view: FeatureViewSpec, table_id: str, options: MaintenanceOptions, now: datetime
) -> ViewMaintenance:
    report = ViewMaintenance(view.name, table_id, dry_run=options.dry_run)
    offline, online = runtime.offline_store, runtime.online_store
    before = offline.version(table_id) if view.offline else None
    if before is not None:
        stats = offline.table_stats(table_id)
        if stats is not None:
            report.files_before, report.bytes_before = stats.files, stats.bytes
        report.retention_cutoff = retention_cutoff(view, now)
        if report.retention_cutoff is not None and not options.dry_run:
            report.rows_deleted = offline.delete_before(table_id, view, report.retention_cutoff)
        if not options.dry_run:
            report.compaction = offline.compact(table_id, view, z_order=options.z_order)
        report.vacuumed_files = offline.vacuum(
            table_id, retention_hours=options.vacuum_retention_hours, dry_run=options.dry_run
        )
        stats = offline.table_stats(table_id)
        if stats is not None:
            report.files_after, report.bytes_after = stats.files, stats.bytes
    if view.online:
        report.online_expiry = online_max_age(view)
        if report.online_expiry is not None and not options.dry_run:
            report.online_rows_expired = online.sweep_expired(table_id, report.online_expiry, now)
        after = offline.version(table_id) if view.offline else None
        if before is not None and after != before and online.sync_marker(table_id) == before:
            online.set_sync_marker(table_id, after)
    return report


def maintain_workspace(
    runtime: Runtime,
    state: WorkspaceState,
    options: MaintenanceOptions = MaintenanceOptions(),
    now: datetime | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> list[ViewMaintenance]:
    """``maintain_view`` for each materialized view and feature table of the workspace, by name."""
    reports = []
    for _, view in sorted(state.definitions.feature_views.items()):
        if view.kind not in ("batch", "table", "stream"):  # a stream view's table is its event log
            continue
        report = maintain_view(runtime, state, view, options, now)
        say(report.summary())
        reports.append(report)
    return reports


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
