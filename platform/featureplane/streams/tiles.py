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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from featureplane.compute.aggregation.tiles import last_n_size, partials
from featureplane.definitions.specs import FeatureViewSpec


@dataclass(frozen=True)
class Event:
    """One transformed record bound for a tile: its event time (µs), the values of the view's input
    columns, and the record's identity."""

    ts: int
    values: dict[str, Any]
    shard: str
    sequence: int


class TileSpec:
    """What a view's tiles hold, compiled once per view."""

    def __init__(self, view: FeatureViewSpec) -> None:
        self.partials = [(c, p) for c, p, _ in partials(view)]
        self.integer_sum = {c for c, p, t in partials(view) if p == "sum" and t.name == "int64"}
        self.columns: dict[str, list[str]] = {}
        for column, partial in self.partials:
            self.columns.setdefault(column, []).append(partial)
        self.last_n = {c: last_n_size(view, c) for c in self.columns}

    def apply(self, tile: dict[str, Any] | None, events: Iterable[Event]) -> tuple[dict[str, Any], int]:
        """The tile with the events it does not hold yet applied, and how many were applied."""
        tile = tile or {"pos": {}, "cols": {c: {} for c in self.columns}, "ts": None}
        applied = 0
        for event in events:
            position = tile["pos"].get(event.shard)
            if position is not None and event.sequence <= int(position):
                continue
            tile["pos"][event.shard] = str(event.sequence)
            tile["ts"] = event.ts if tile["ts"] is None else max(tile["ts"], event.ts)
            for column, wanted in self.columns.items():
                value = event.values.get(column)
                if value is not None:
                    self._add(tile["cols"][column], wanted, column, event.ts, value)
            applied += 1
        return tile, applied

    def _add(self, state: dict[str, Any], wanted: list[str], column: str, ts: int, value: Any) -> None:
        n = state.get("n", 0)
        if "m2" in wanted:  # Welford's update of the sum of squared deviations from the mean
            total = state.get("sum", 0.0)
            delta = value - (total / n if n else 0.0)
            new_mean = (total + value) / (n + 1)
            state["m2"] = state.get("m2", 0.0) + delta * (value - new_mean)
        if "n" in wanted or "m2" in wanted:
            state["n"] = n + 1
        if "sum" in wanted:
            zero = 0 if column in self.integer_sum else 0.0
            state["sum"] = state.get("sum", zero) + value
        if "min" in wanted and ("min" not in state or value < state["min"]):
            state["min"] = value
        if "max" in wanted and ("max" not in state or value > state["max"]):
            state["max"] = value
        pair = [ts, value]
        if "first" in wanted and ("first" not in state or pair < state["first"]):
            state["first"] = pair
        if "last" in wanted and ("last" not in state or pair > state["last"]):
            state["last"] = pair
        if "lastn" in wanted:  # the n latest (time, value) pairs, in order
            kept = state.setdefault("lastn", [])
            bisect.insort(kept, pair)
            del kept[: max(0, len(kept) - self.last_n[column])]
        if "distinct" in wanted:
            kept = state.setdefault("distinct", [])
            at = bisect.bisect_left(kept, value)
            if at == len(kept) or kept[at] != value:
                kept.insert(at, value)

    def row(self, index: int, tile: dict[str, Any]) -> list[Any]:
        """The tile as the online roll-up reads it: ``[interval index, partial, ...]`` in
        ``partials`` order (``compute.aggregation.online``)."""
        out: list[Any] = [index]
        for column, partial in self.partials:
            state = tile["cols"].get(column, {})
            if partial in ("first", "last"):
                out.append(state[partial][1] if partial in state else None)
            elif partial == "lastn":
                out.append([v for _, v in state.get("lastn", [])] or None)
            elif partial == "lastn_ts":
                out.append([t for t, _ in state.get("lastn", [])] or None)
            elif partial == "n":
                out.append(state.get("n", 0))
            elif partial == "distinct":
                out.append(list(state["distinct"]) if "distinct" in state else None)
            else:
                out.append(state.get(partial))
        return out
