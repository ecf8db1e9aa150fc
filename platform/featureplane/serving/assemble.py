"""Feature vectors from online rows, in the API's JSON form (int64 values as strings).

The per-service functions are compiled once per registry snapshot from the views' positions, types and
ttls (``featureplane.serving.resolve``), so that an entity costs one pass of straight-line code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import chain
from typing import TYPE_CHECKING, Any

import orjson

from featureplane.serving.protocol import format_time_us
from featureplane.types import DataType

if TYPE_CHECKING:
    from featureplane.online_stores.base import OnlineValue
    from featureplane.serving.plan import ServicePlan


def encode_value(value: Any, dtype: DataType) -> Any:
    """A stored value in the API's JSON form: int64 as strings, as Tecton answers."""
    if value is None:
        return None
    if dtype.name == "int64":
        return str(value)
    if dtype.is_array:
        return [encode_value(v, dtype.element) for v in value]  # type: ignore[arg-type]
    return value


def extractor(
    features: tuple[tuple[str, int, DataType], ...], stored: int
) -> Callable[[list[Any]], list[Any]]:
    """A function from a view's stored values to the service's selection of them in the API's form
    (int64 as strings). It is compiled once per registry snapshot from the positions alone, so that a
    batch spends one call per row and view on it."""
    text = _value_list(features, stored)
    if text == "s[:]":
        return _same
    return eval(f"lambda s: {text}")  # the text holds integer positions only


def _same(values: list[Any]) -> list[Any]:
    return values


def _value_list(features: tuple[tuple[str, int, DataType], ...], stored: int) -> str:
    """Python text of a list of a view's selected values, API-encoded, from its stored values ``s``."""
    parts = []
    for _, index, dtype in features:
        value = f"s[{index}]"
        if dtype.name == "int64":
            value = f"(None if {value} is None else str({value}))"
        elif dtype.is_array and dtype.element.name == "int64":  # type: ignore[union-attr]
            value = f"(None if {value} is None else [None if x is None else str(x) for x in {value}])"
        parts.append(value)
    if parts == [f"s[{i}]" for i in range(stored)]:
        return "s[:]"
    return f"[{', '.join(parts)}]"


def assembler(views: list[tuple[int | None, tuple[tuple[str, int, DataType], ...], int]]) -> Callable:
    """``assemble(rows, now)``: every entity's feature vector from its rows (``rows`` holds each
    entity's views in order; a row counts if present and within its view's ttl at ``now``), each as
    ``{"features": [...]}``. Compiled once per service from the views' positions, types and ttls, so
    that an entity costs one pass of straight-line code rather than a call per view."""
    lines = ["def assemble(rows, now):"]
    for v, (ttl_us, _, _) in enumerate(views):
        if ttl_us is not None:
            lines.append(f"    o{v} = now - {int(ttl_us)}")
    lines += ["    out = []", "    append = out.append", f"    for e in range(0, len(rows), {len(views)}):"]
    for v, (ttl_us, features, stored) in enumerate(views):
        fresh = "r is not None" if ttl_us is None else f"r is not None and r[0] > o{v}"
        assign = "x =" if v == 0 else "x +="
        lines += [
            f"        r = rows[e + {v}]",  # an OnlineValue: (event time, stored values)
            f"        if {fresh}:",
            "            s = r[1]",
            f"            {assign} {_value_list(features, stored)}",
            "        else:",
            f"            {assign} {[None] * len(features)!r}",
        ]
    lines += ['        append({"features": x})', "    return out"]
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # the text holds integer positions and ttls only
    return namespace["assemble"]


def json_assembler(views: list[tuple[tuple[str, int, DataType], ...]], stored: list[int]) -> Callable:
    """``assemble(rows)``: every entity's feature vector from ``OnlineStore.read_encoded`` rows (one
    tuple per entity of each view's values JSON, None where missing or past its ttl), each as
    ``{"features": [...]}``. All rows' JSON is decoded in one pass, then each entity costs one pass of
    straight-line code compiled once per service."""
    width = len(views)
    blobs = ", ".join(f"r[{v}] or NULL" for v in range(width))
    lines = [
        "def assemble(rows):",
        f"    values = loads(b'[' + b','.join([b for r in rows for b in ({blobs},)]) + b']')",
        "    out = []",
        "    append = out.append",
        f"    for e in range(0, len(values), {width}):",
    ]
    for v, features in enumerate(views):
        assign = "x =" if v == 0 else "x +="
        lines += [
            f"        s = values[e + {v}]",
            "        if s is not None:",
            f"            {assign} {_value_list(features, stored[v])}",
            "        else:",
            f"            {assign} {[None] * len(features)!r}",
        ]
    lines += ['        append({"features": x})', "    return out"]
    namespace: dict[str, Any] = {"loads": orjson.loads, "NULL": b"null"}
    exec("\n".join(lines), namespace)  # the text holds integer positions only
    return namespace["assemble"]


def feature_vectors(
    plan: ServicePlan, rows: list[OnlineValue | None], now: int, detail: bool
) -> tuple[list[list[Any]], list[list[bool]], list[list[int | None]]]:
    """Each entity's feature values (``rows`` holds each entity's views in order) and, with
    ``detail``, per feature whether it is present and its event time. Works view by view over
    all entities (comprehensions rather than a loop per value): batches are dominated by it."""
    width = len(plan.views)
    if len(rows) == width and not detail:  # one entity: no per-view columns needed
        values: list[Any] = []
        for view, row in zip(plan.views, rows, strict=True):
            if row is not None and (view.ttl_us is None or now - row.event_ts < view.ttl_us):
                values += view.extract(row.values)
            else:
                values += [None] * view.width
        return [values], [], []
    columns: list[list[list[Any]]] = []
    fresh_columns: list[list[bool]] = []
    for v, view in enumerate(plan.views):
        part = rows[v::width]
        oldest = -1 << 62 if view.ttl_us is None else now - view.ttl_us
        fresh = [r is not None and r.event_ts > oldest for r in part]
        nones = [None] * view.width
        extract = view.extract
        columns.append([extract(r.values) if f else nones for r, f in zip(part, fresh, strict=True)])  # type: ignore[union-attr]
        fresh_columns.append(fresh)
    if width == 1:
        vectors = [list(values) for values in columns[0]]
    elif width == 2:
        vectors = [a + b for a, b in zip(columns[0], columns[1], strict=True)]
    else:
        vectors = [list(chain.from_iterable(parts)) for parts in zip(*columns, strict=True)]
    if not detail:
        return vectors, [], []
    present: list[list[bool]] = []
    times: list[list[int | None]] = []
    for e in range(len(vectors)):
        row_present: list[bool] = []
        row_times: list[int | None] = []
        for v, view in enumerate(plan.views):
            fresh = fresh_columns[v][e]
            row_present += [fresh] * view.width
            row_times += [rows[e * width + v].event_ts if fresh else None] * view.width  # type: ignore[union-attr]
        present.append(row_present)
        times.append(row_times)
    return vectors, present, times


def feature_metadata(
    plan: ServicePlan, want: dict[str, bool], statuses: list[Any] | None, times: list[int | None]
) -> list[dict[str, Any]] | None:
    """``metadata.features``: the requested fields of each feature. A status is a string for one
    entity and a list (one per row) for a batch."""
    if not (
        want["includeNames"]
        or want["includeDataTypes"]
        or want["includeEffectiveTimes"]
        or want["includeServingStatus"]
    ):
        return None
    entries = []
    for i, base in enumerate(plan.metadata):
        entry: dict[str, Any] = {}
        if want["includeNames"]:
            entry["name"] = base["name"]
        if want["includeDataTypes"]:
            entry["dataType"] = base["dataType"]
        if want["includeEffectiveTimes"] and times[i] is not None:
            entry["effectiveTime"] = format_time_us(times[i])  # type: ignore[arg-type]
        if statuses is not None:
            entry["status"] = statuses[i]
        entries.append(entry)
    return entries if any(entries) else None


def slo_info(started: float, store_seconds: float, compute_seconds: float | None = None) -> dict[str, Any]:
    server = time.perf_counter() - started
    slo = {
        "sloEligible": True,
        "sloServerTimeSeconds": round(server, 6),
        "serverTimeSeconds": round(server, 6),
        "storeMaxLatency": round(store_seconds, 6),
    }
    if compute_seconds is not None:  # realtime feature views' functions
        slo["realtimeComputeSeconds"] = round(compute_seconds, 6)
    return slo
