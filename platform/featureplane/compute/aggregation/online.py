"""Aggregates online: what the online store holds per entity, and the roll-up a lookup runs on it.

An aggregate view's online row holds, per entity, the values of its lifetime features as of the end of
the latest materialized partition, then its tiles inside the longest finite window before that end
(``[[interval index, partial, ...], ...]`` in ``tiles.partials`` order; times as microseconds). A lookup
at time ``now`` rolls each finite window up from those tiles at request time, with the semantics the
training set uses (``docs/aggregations.md``):

- a window ends at ``now`` aligned down to the aggregation interval;
- only tiles whose partition had ended by ``now`` count: a tile's effective time is the end of the
  partition that wrote it (the batch schedule's grid), so both sides see only what a scheduled run
  had materialized by then.

A stream feature view's tiles are written by the stream processor as events arrive, so a tile counts
as soon as its events are processed. In ``continuous`` mode a window ending at ``now`` covers the
interval holding ``now`` and the ones before it (``[T + interval - window, now]``, events processed by
then), and the values' effective time is ``now``; in ``time_interval`` mode it ends at ``T``, as a
batch view's with a schedule of one interval.

Sums use ``math.fsum`` and the variance combines tiles by Chan's formula, so a roll-up gives the same
digits however often it runs. Standard library only: this is on the lookup path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from featureplane.compute.aggregation.tiles import aggregates, default_value, interval_us, partials
from featureplane.definitions.specs import FeatureSpec, FeatureViewSpec

TILES = "__fp_tiles"  # the online row's last value: the tiles inside the longest finite window
EPOCH = datetime(1970, 1, 1)


def lifetime_features(view: FeatureViewSpec) -> list[FeatureSpec]:
    return [f for f in aggregates(view) if f.window_seconds is None]


def longest_window(view: FeatureViewSpec) -> int:
    """The longest finite window in intervals (0 when every window is lifetime)."""
    step = view.aggregation_interval_seconds or 1
    return max((f.window_seconds // step for f in aggregates(view) if f.window_seconds), default=0)


def online_expiry_seconds(view: FeatureViewSpec) -> int | None:
    """How long after its event time a view's online row stops mattering (None: never).

    A plain view's row is served within its ttl. An aggregate view's row is stamped with the end of
    the partition it was synced at and holds the tiles of the longest window before it, so once that
    window has passed every finite window is empty and the row rolls up to what a missing row gives;
    with lifetime features it never expires."""
    if not view.is_aggregate:
        return view.ttl_seconds
    if lifetime_features(view) or not longest_window(view):
        return None
    return longest_window(view) * (view.aggregation_interval_seconds or 1)


def schedule_intervals(view: FeatureViewSpec) -> int:
    """The batch schedule in intervals: partitions end every this many intervals (1 without one)."""
    step = view.aggregation_interval_seconds or 1
    return max(1, (view.batch_schedule_seconds or step) // step)


def materialized_through(view: FeatureViewSpec, index: int) -> int:
    """The interval index where the partitions that had ended by interval ``index`` end: tiles
    before it are effective at ``index``, later ones are not yet materialized by a scheduled run."""
    s = schedule_intervals(view)
    return index // s * s


def iso_us(us: int) -> str:
    """Microseconds since the epoch as the online store writes timestamps (ISO-8601 UTC)."""
    value = EPOCH + timedelta(microseconds=us)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Feature:
    position: int  # in the view's features
    function: str
    window: int | None  # intervals; None: lifetime
    parts: dict[str, int]  # partial -> position in a tile row (after the index)
    n: int  # last_n's size
    integer: bool  # the output (or, for last_n, its elements) is int64
    numeric: bool  # the output (or its elements) is float64
    timestamp: bool  # the input (and min/max/first/last/last_n outputs) are timestamps
    default: Any


class OnlineRollup:
    """A view's roll-up at request time, compiled once per registry snapshot."""

    def __init__(self, view: FeatureViewSpec) -> None:
        self.step = interval_us(view)
        stream = view.kind == "stream"
        self.schedule = 1 if stream else schedule_intervals(view)
        self.current = stream and view.stream_processing_mode == "continuous"
        self.width = len(view.features)
        columns = {(c, p): i + 1 for i, (c, p, _) in enumerate(partials(view))}
        lifetime = [f.name for f in lifetime_features(view)]
        self.lifetime = [(view.features.index(view.feature(n)), i) for i, n in enumerate(lifetime)]
        self.lifetime_empty = [(view.features.index(f), _empty(f)) for f in lifetime_features(view)]
        self.tiles_at = len(lifetime)
        finite = []
        for position, feature in enumerate(view.features):
            if feature.window_seconds is None:
                continue
            column = feature.column or feature.name
            input_type = str(feature.params.get("input_type", "float64"))
            finite.append(
                _Feature(
                    position=position,
                    function=feature.function or "",
                    window=feature.window_seconds // (view.aggregation_interval_seconds or 1),
                    parts={p: i for (c, p), i in columns.items() if c == column},
                    n=int(feature.params.get("n", 0)),
                    integer=_element(feature) == "int64",
                    numeric=_element(feature) == "float64",
                    timestamp=input_type == "timestamp",
                    default=_empty(feature),
                )
            )
        self.finite = finite

    def at(self, values: Sequence[Any] | None, now_us: int) -> tuple[int, list[Any]]:
        """(the windows' end in microseconds, every feature's value in view order) at ``now_us`` from
        a stored row's values (None: an entity without events)."""
        end = now_us // self.step + (1 if self.current else 0)
        cut = end // self.schedule * self.schedule
        out: list[Any] = [None] * self.width
        tiles: list[list[Any]] = []
        if values is None:
            for position, empty in self.lifetime_empty:
                out[position] = empty
        else:
            for position, i in self.lifetime:
                out[position] = values[i]
            tiles = [t for t in values[self.tiles_at] if t[0] < cut]
        for feature in self.finite:
            start = end - feature.window  # type: ignore[operator]
            window = [t for t in tiles if t[0] >= start]
            out[feature.position] = _cast(_value(feature, window), feature) if window else feature.default
        return (now_us if self.current else end * self.step), out


def _element(feature: FeatureSpec) -> str:
    dtype = feature.type
    return dtype.element.name if dtype.is_array else dtype.name  # type: ignore[union-attr]


def _empty(feature: FeatureSpec) -> Any:
    value = default_value(feature)
    if value == 0 and feature.type.name == "float64":
        return 0.0
    return value


def _present(window: list[list[Any]], i: int) -> list[Any]:
    return [t[i] for t in window if t[i] is not None]


def _value(feature: _Feature, window: list[list[Any]]) -> Any:
    """One feature over the tiles of its window (in interval order, at least one)."""
    f, parts = feature.function, feature.parts
    if f == "count":
        return sum(t[parts["n"]] or 0 for t in window)
    if f == "sum":
        values = _present(window, parts["sum"])
        if feature.integer:
            return sum(values)
        return math.fsum(values)
    if f == "mean":
        n = sum(t[parts["n"]] or 0 for t in window)
        return math.fsum(_present(window, parts["sum"])) / n if n else None
    if f in ("stddev_pop", "stddev_samp"):
        return _stddev(f, window, parts["n"], parts["sum"], parts["m2"])
    if f in ("min", "max", "first", "last"):
        values = _present(window, parts[f])
        if not values:
            return None
        value = (
            {"min": min, "max": max}[f](values) if f in ("min", "max") else values[0 if f == "first" else -1]
        )
        return iso_us(value) if feature.timestamp else value
    if f == "last_n":
        values = [v for t in window for v in (t[parts["lastn"]] or [])][-feature.n :]
        return [iso_us(v) for v in values] if feature.timestamp else values
    if f == "count_distinct":
        return len({_hashable(v) for t in window for v in (t[parts["distinct"]] or [])})
    raise ValueError(f"unknown aggregation function {f!r}")


def _cast(value: Any, feature: _Feature) -> Any:
    """A value in the feature's declared type, as the SQL roll-up's final ``CAST`` gives it (tiles
    of a column hold the type its first aggregate declares)."""
    if value is None or feature.timestamp or feature.function in ("count", "count_distinct"):
        return value
    if isinstance(value, list):
        return [_cast(v, feature) for v in value]
    if feature.integer and isinstance(value, float):
        return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)
    if not feature.integer and isinstance(value, int) and not isinstance(value, bool):
        return float(value) if feature.numeric else value
    return value


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _stddev(function: str, window: list[list[Any]], n_at: int, sum_at: int, m2_at: int) -> float | None:
    """The standard deviation of the window's events from its tiles' counts, sums and squared
    deviations (Chan et al.'s pairwise combination, exactly rounded sums)."""
    tiles = [(t[n_at], t[sum_at], t[m2_at]) for t in window if t[n_at]]
    count = sum(n for n, _, _ in tiles)
    if count == 0 or (function == "stddev_samp" and count < 2):
        return None
    mean = math.fsum(s for _, s, _ in tiles) / count
    m2 = math.fsum([*(m for _, _, m in tiles), *(n * (s / n - mean) ** 2 for n, s, _ in tiles)])
    return math.sqrt(max(m2, 0.0) / (count - 1 if function == "stddev_samp" else count))
