"""A stream tile: the partial aggregates of one entity's events in one aggregation interval, kept up
to date one event at a time, and its projection to the tile rows the online roll-up reads.

A tile's state is a JSON-serialisable dict: per input column the partials that
``compute.aggregation.tiles.partials`` lists, plus what merging out-of-order events needs and the
batch tile does not store (the times of the first and last values, the last n values' times), and
``pos``: per shard, the highest sequence number applied to this tile (as decimal text: Kinesis
sequence numbers exceed 64 bits). A record whose sequence number is
not above its shard's position is already in the tile and is skipped, so applying a batch again (after
a crash, or a redelivery) changes nothing. Standard library only.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from featureplane.compute.aggregation.tiles import last_n_size, partials
from featureplane.definitions.specs import FeatureViewSpec


class Event(NamedTuple):
    """One transformed record bound for a tile: its event time (µs), the values of the view's input
    columns, and the record's identity. A named tuple: the processor makes one per record."""

    ts: int
    values: dict[str, Any]
    shard: str
    sequence: int


class TileSpec:
    """What a view's tiles hold, compiled once per view: per input column a function adding a value
    to its partials, and per partial one reading it into the tile row."""

    def __init__(self, view: FeatureViewSpec) -> None:
        self.partials = [(c, p) for c, p, _ in partials(view)]
        self.integer_sum = {c for c, p, t in partials(view) if p == "sum" and t.name == "int64"}
        self.columns: dict[str, list[str]] = {}
        for column, partial in self.partials:
            self.columns.setdefault(column, []).append(partial)
        self.last_n = {c: last_n_size(view, c) for c in self.columns}
        self._adders = [
            (c, _adder(wanted, c in self.integer_sum, self.last_n[c])) for c, wanted in self.columns.items()
        ]
        self._readers = [_reader(column, partial) for column, partial in self.partials]

    def apply(self, tile: dict[str, Any] | None, events: Iterable[Event]) -> tuple[dict[str, Any], int]:
        """The tile with the events it does not hold yet applied, and how many were applied."""
        tile = tile or {"pos": {}, "cols": {c: {} for c in self.columns}, "ts": None}
        positions, cols, latest = tile["pos"], tile["cols"], tile["ts"]
        adders = self._adders
        applied = 0
        for ts, values, shard, sequence in events:
            position = positions.get(shard)
            if position is not None and sequence <= int(position):
                continue
            positions[shard] = str(sequence)
            if latest is None or ts > latest:
                latest = ts
            for column, add in adders:
                value = values.get(column)
                if value is not None:
                    add(cols[column], ts, value)
            applied += 1
        tile["ts"] = latest
        return tile, applied

    def online_row(self, tiles: dict[int, dict[str, Any]]) -> tuple[int, list[list[Any]]]:
        """An entity's online row from its tiles: the latest event time they hold (0 when there are
        none) and their tile rows in interval order."""
        ordered = sorted(tiles.items())
        rows = [self.row(index, tile) for index, tile in ordered]
        return max((tile["ts"] for _, tile in ordered), default=0), rows

    def row(self, index: int, tile: dict[str, Any]) -> list[Any]:
        """The tile as the online roll-up reads it: ``[interval index, partial, ...]`` in
        ``partials`` order (``compute.aggregation.online``)."""
        cols = tile["cols"]
        return [index, *[read(cols) for read in self._readers]]


def _adder(wanted: list[str], integer_sum: bool, last_n: int) -> Callable[[dict[str, Any], int, Any], None]:
    """The function adding one value (at time ``ts``) to a column's partials ``wanted``."""
    m2, count, total = "m2" in wanted, "n" in wanted or "m2" in wanted, "sum" in wanted
    low, high, first, last = "min" in wanted, "max" in wanted, "first" in wanted, "last" in wanted
    latest_n, distinct = "lastn" in wanted, "distinct" in wanted
    zero = 0 if integer_sum else 0.0

    def add(state: dict[str, Any], ts: int, value: Any) -> None:
        if m2:  # Welford's update of the sum of squared deviations from the mean
            n = state.get("n", 0)
            sum_ = state.get("sum", 0.0)
            delta = value - (sum_ / n if n else 0.0)
            new_mean = (sum_ + value) / (n + 1)
            state["m2"] = state.get("m2", 0.0) + delta * (value - new_mean)
        if count:
            state["n"] = state.get("n", 0) + 1
        if total:
            state["sum"] = state.get("sum", zero) + value
        if low and ("min" not in state or value < state["min"]):
            state["min"] = value
        if high and ("max" not in state or value > state["max"]):
            state["max"] = value
        if first or last or latest_n:
            pair = [ts, value]
            if first and ("first" not in state or pair < state["first"]):
                state["first"] = pair
            if last and ("last" not in state or pair > state["last"]):
                state["last"] = pair
            if latest_n:  # the n latest (time, value) pairs, in order
                kept = state.setdefault("lastn", [])
                bisect.insort(kept, pair)
                del kept[: max(0, len(kept) - last_n)]
        if distinct:
            kept = state.setdefault("distinct", [])
            at = bisect.bisect_left(kept, value)
            if at == len(kept) or kept[at] != value:
                kept.insert(at, value)

    return add


def _reader(column: str, partial: str) -> Callable[[dict[str, Any]], Any]:
    """The function reading one partial of a tile's columns as the tile row holds it."""
    empty: dict[str, Any] = {}
    if partial in ("first", "last"):
        return lambda cols: (
            cols.get(column, empty)[partial][1] if partial in cols.get(column, empty) else None
        )
    if partial == "lastn":
        return lambda cols: [v for _, v in cols.get(column, empty).get("lastn", [])] or None
    if partial == "lastn_ts":
        return lambda cols: [t for t, _ in cols.get(column, empty).get("lastn", [])] or None
    if partial == "n":
        return lambda cols: cols.get(column, empty).get("n", 0)
    if partial == "distinct":
        return lambda cols: list(d) if (d := cols.get(column, empty).get("distinct")) is not None else None
    return lambda cols: cols.get(column, empty).get(partial)
