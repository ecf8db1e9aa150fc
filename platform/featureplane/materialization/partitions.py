"""Time partitions of a batch feature view: windows of ``batch_schedule`` from ``feature_start_time``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from featureplane.definitions.specs import FeatureViewSpec

DAY = timedelta(days=1)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def align_down(value: datetime, step: timedelta) -> datetime:
    """The start of the window of size ``step`` (aligned to midnight UTC) that contains ``value``."""
    midnight = datetime(value.year, value.month, value.day)
    if step >= DAY:
        days = (value - datetime(1970, 1, 1)).days
        return datetime(1970, 1, 1) + timedelta(days=days - days % step.days)
    offset = (value - midnight) // step * step
    return midnight + offset


def windows(view: FeatureViewSpec, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The view's partition windows that lie inside ``[start, end)``."""
    step = view.schedule
    assert step is not None, f"feature view {view.name!r} has no batch_schedule"
    first = max(start, view.start or start)
    cursor = align_down(first, step)
    if cursor < first:
        cursor += step
    while cursor + step <= end:
        yield cursor, cursor + step
        cursor += step


def count_complete_partitions(view: FeatureViewSpec, until: datetime | None = None) -> int:
    """How many whole partitions exist from ``feature_start_time`` to ``until`` (default: now)."""
    if not view.is_batch or view.start is None or view.schedule is None:
        return 0
    until = until or utcnow()
    if until <= view.start:
        return 0
    return int((until - view.start) // view.schedule)


def partition_key(view: FeatureViewSpec, start: datetime) -> str:
    """Dagster's partition key for the window starting at ``start``."""
    return start.strftime(partition_format(view))


def partition_format(view: FeatureViewSpec) -> str:
    return "%Y-%m-%d" if (view.batch_schedule_seconds or 0) >= 86400 else "%Y-%m-%d-%H:%M"


def parse_partition_key(view: FeatureViewSpec, key: str) -> tuple[datetime, datetime]:
    """The window ``[start, end)`` of a partition key such as ``2024-03-01`` or ``2024-03-01-05:00``."""
    try:
        start = datetime.strptime(key, partition_format(view))
    except ValueError as exc:
        raise ValueError(
            f"partition {key!r} is not a partition of {view.name!r} (expected the form "
            f"{datetime(2024, 3, 1).strftime(partition_format(view))})"
        ) from exc
    assert view.schedule is not None
    if align_down(start, view.schedule) != start:
        raise ValueError(f"partition {key!r} is not aligned to {view.name!r}'s schedule {view.schedule}")
    return start, start + view.schedule
