"""Feature freshness: how far the newest materialized partition lags behind now.

A view is fresh while ``now - end of its newest materialized partition`` is at most its expected
freshness: ``expected_feature_freshness`` when set, else twice its ``batch_schedule`` (a daily view may
miss one run before it is stale). What counts is the data's time, not when a run happened: backfilling
old partitions does not make a view fresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.materialization.partitions import count_complete_partitions, parse_partition_key, utcnow

DEFAULT_MULTIPLIER = 2


def expected_freshness(view: FeatureViewSpec) -> timedelta | None:
    """The view's expected freshness, or None when it is not monitored."""
    if not view.is_batch or not view.monitor_freshness or view.schedule is None or view.start is None:
        return None
    if view.expected_freshness_seconds:
        return timedelta(seconds=view.expected_freshness_seconds)
    return DEFAULT_MULTIPLIER * view.schedule


def freshness_problems(view: FeatureViewSpec) -> list[str]:
    seconds = view.expected_freshness_seconds
    if seconds is not None and seconds <= 0:
        return [f"expected_feature_freshness must be positive, got {timedelta(seconds=seconds)}"]
    return []


def _hours(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds() / 3600, 3)


@dataclass
class FreshnessResult:
    view: str
    passed: bool
    expected: timedelta
    evaluated_at: datetime
    last_partition: str | None = None
    data_until: datetime | None = None
    lag: timedelta | None = None
    message: str = ""

    def metadata(self) -> dict[str, Any]:
        return {
            "last_materialized_partition": self.last_partition or "none",
            "data_until": self.data_until.isoformat() if self.data_until else "never",
            "lag_hours": _hours(self.lag) if self.lag is not None else -1.0,
            "expected_freshness_hours": _hours(self.expected),
            "evaluated_at": self.evaluated_at.isoformat(),
        }


def evaluate_freshness(
    view: FeatureViewSpec, materialized_partitions: Iterable[str], now: datetime | None = None
) -> FreshnessResult:
    """Compare the newest materialized partition's end with ``now`` (naive UTC)."""
    now = now or utcnow()
    expected = expected_freshness(view)
    if expected is None:
        raise ValueError(f"feature view {view.name!r} is not monitored for freshness")
    ends = []
    for key in materialized_partitions:
        try:
            ends.append((parse_partition_key(view, key)[1], key))
        except ValueError:
            continue  # a partition of an older definition of the view
    result = FreshnessResult(view=view.name, passed=True, expected=expected, evaluated_at=now)
    if ends:
        result.data_until, result.last_partition = max(ends)
        result.lag = now - result.data_until
        result.passed = result.lag <= expected
        state = "fresh" if result.passed else "stale"
        result.message = (
            f"{view.name} is {state}: its newest materialized partition {result.last_partition} ends "
            f"{format_age(result.lag)} ago (expected within {format_age(expected)})"
        )
        return result
    if count_complete_partitions(view, now) == 0:
        result.message = f"{view.name} has no complete partition yet"
        return result
    assert view.start is not None and view.schedule is not None
    result.lag = now - (view.start + view.schedule)
    result.passed = result.lag <= expected
    result.message = (
        f"{view.name} has never been materialized; its first partition ended {format_age(result.lag)} ago"
        + ("" if result.passed else f" (expected within {format_age(expected)})")
    )
    return result


def format_age(value: timedelta) -> str:
    """``3.2 days``, ``5.0 hours``, ``12 minutes``."""
    seconds = int(value.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{max(seconds, 0) // 60} minutes"
