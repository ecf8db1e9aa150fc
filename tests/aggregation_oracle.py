"""Brute-force window aggregates straight from raw events: the reference the tiled roll-ups must match."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

EPOCH = datetime(1970, 1, 1)


def align_down(t: datetime, interval: timedelta) -> datetime:
    return EPOCH + (t - EPOCH) // interval * interval


def aggregate(
    feature,
    events: Iterable[dict[str, Any]],
    key: str,
    t: datetime,
    interval: timedelta,
    schedule: timedelta | None = None,
) -> Any:
    """The value of ``feature`` (a FeatureSpec) for entity ``key`` at time ``t``: windows end at ``t``
    aligned down to ``interval`` and hold the events of the partitions (of ``schedule``, aligned to
    the epoch) that had ended by ``t``; events are dicts with ``user_id``, ``ts`` and the columns."""
    end = align_down(t, interval)
    visible = end if schedule is None else min(end, align_down(t, schedule))
    start = None if feature.window_seconds is None else end - timedelta(seconds=feature.window_seconds)
    column = feature.column
    pairs = sorted(
        (e["ts"], e[column])
        for e in events
        if e["user_id"] == key
        and e[column] is not None
        and e["ts"] < visible
        and (start is None or e["ts"] >= start)
    )
    values = [v for _, v in pairs]
    function = feature.function
    if function == "count":
        return len(values)
    if function == "count_distinct":
        return len(set(values))
    if function == "sum":
        return sum(values) if values else 0
    if function == "mean":
        return sum(values) / len(values) if values else None
    if function in ("stddev_pop", "stddev_samp"):
        n = len(values) - (function == "stddev_samp")
        if n <= 0:
            return None
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    if function == "min":
        return min(values) if values else None
    if function == "max":
        return max(values) if values else None
    if function == "first":
        return values[0] if values else None
    if function == "last":
        return values[-1] if values else None
    if function == "last_n":
        return values[-int(feature.params["n"]) :]
    raise AssertionError(f"no oracle for {function}")


def same(expected: Any, got: Any) -> bool:
    if isinstance(got, float) and math.isnan(got):
        got = None
    if hasattr(got, "tolist"):
        got = got.tolist()
    if isinstance(expected, float) and got is not None:
        return got == pytest.approx(expected, rel=1e-9, abs=1e-9)
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(same(e, g) for e, g in zip(expected, got, strict=True))
    return expected == got


def mismatches(features: Sequence, expected: dict, got: dict) -> list[str]:
    return [
        f"{f.name}: expected {expected[f.name]!r}, got {got[f.name]!r}"
        for f in features
        if not same(expected[f.name], got[f.name])
    ]
