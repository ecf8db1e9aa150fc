"""Values the lookup service computes rather than reads: realtime feature views and aggregates.

A realtime view's stored Python function runs once per request with the request context and the
current values of the views it reads (fetched in the same online round trip as the service's own
views). An aggregate view's windows are rolled up from its stored tiles at request time, ending at the
request time (``compute.aggregation.online``); an entity without a row has seen no events, so its
windows are empty: 0 for counts and sums, as the training set says. Standard library only (the
lookup path).

``ComputePlan`` is built once per registry snapshot; ``ComputePlan.complete`` runs per request.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from featureplane.compute.aggregation.online import OnlineRollup
from featureplane.errors import describe_value
from featureplane.online_stores.base import OnlineValue
from featureplane.types import DataType

log = logging.getLogger("featureplane.serving")

REQUEST, VIEW, CONTEXT = "request", "view", "context"


class ComputeError(Exception):
    """A request the service cannot compute features for; ``status`` says whose fault it is."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class InputRead:
    """One argument of a realtime function: the request's fields, the context, or a view's values."""

    kind: str
    read: int = -1  # index of the view's row among the service's reads
    features: tuple[tuple[str, int, DataType], ...] = ()
    ttl_us: int | None = None
    fields: tuple[str, ...] = ()  # request fields


@dataclass(frozen=True)
class RealtimeRead:
    name: str
    function: Callable[..., Any]
    inputs: tuple[InputRead, ...]
    outputs: tuple[tuple[str, DataType], ...]


@dataclass(frozen=True)
class ComputePlan:
    """How to turn the rows read for a service into rows for each of its views.

    ``positions`` maps each view of the service to its row among the reads (``>= 0``) or to realtime
    view ``-1 - position``; ``rollups`` holds, per read, an aggregate view's roll-up of its stored
    tiles at request time (None for other views)."""

    positions: tuple[int, ...]
    rollups: tuple[OnlineRollup | None, ...]
    realtime: tuple[RealtimeRead, ...]
    request_context: tuple[tuple[str, DataType], ...]

    def complete(
        self, rows: Sequence[OnlineValue | None], request_context_map: Any, now: int | None = None
    ) -> tuple[list[OnlineValue | None], float | None]:
        """Rows for the service's views at request time ``now`` (microseconds; default: the clock's),
        and the seconds spent in realtime functions (None if none ran)."""
        if now is None:
            now = time.time_ns() // 1000
        filled = [
            row if rollup is None else OnlineValue(*rollup.at(None if row is None else row.values, now))
            for row, rollup in zip(rows, self.rollups, strict=True)
        ]
        seconds = None
        computed: list[OnlineValue] = []
        if self.realtime:
            context = check_request_context(self.request_context, request_context_map)
            started = time.perf_counter()
            for view in self.realtime:
                values = run_realtime(view, filled, context, now)
                computed.append(
                    OnlineValue(
                        now, [stored_value(v, t) for v, (_, t) in zip(values, view.outputs, strict=True)]
                    )
                )
            seconds = time.perf_counter() - started
        return [filled[p] if p >= 0 else computed[-1 - p] for p in self.positions], seconds


# -- request context -----------------------------------------------------------------------------


def check_request_context(fields: Sequence[tuple[str, DataType]], given: Any) -> dict[str, Any]:
    """The request context as Python values of the declared types; 400 naming what is wrong."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ComputeError(400, "params.requestContextMap must be an object of request field names to values")
    missing = [name for name, _ in fields if given.get(name) is None]
    if missing:
        expected = ", ".join(f"{n} ({t})" for n, t in fields)
        raise ComputeError(
            400,
            f"missing request context key(s) {', '.join(missing)} in params.requestContextMap "
            f"(this feature service needs {expected})",
        )
    return {name: request_value(name, given[name], dtype) for name, dtype in fields}


def request_value(name: str, value: Any, dtype: DataType) -> Any:
    """A request field's value as a Python value of ``dtype`` (int64 also from numeric strings,
    timestamps from ISO-8601 strings), or ComputeError 400."""
    try:
        return _coerce(value, dtype, strings_as_numbers=True)
    except (TypeError, ValueError):
        raise ComputeError(
            400, f"requestContextMap.{name} must be {_describe(dtype)}, got {describe_value(value)}"
        ) from None


def _describe(dtype: DataType) -> str:
    return {
        "int64": "an int64 (a number or a numeric string)",
        "float64": "a float64 (a number)",
        "string": "a string",
        "bool": "a bool (true or false)",
        "timestamp": "a timestamp (an ISO-8601 string)",
    }.get(dtype.name, f"an array of {dtype.element}")


def _coerce(value: Any, dtype: DataType, strings_as_numbers: bool = False) -> Any:
    if value is None:
        return None
    name = dtype.name
    if dtype.is_array:
        if not isinstance(value, list | tuple):
            raise TypeError
        return [_coerce(v, dtype.element, strings_as_numbers) for v in value]  # type: ignore[arg-type]
    if name == "int64":
        if isinstance(value, bool):
            raise TypeError
        whole = isinstance(value, float) and value.is_integer()
        if isinstance(value, int):
            number = value
        elif whole or (strings_as_numbers and isinstance(value, str)):
            number = int(value)
        else:
            raise TypeError
        if not -(2**63) <= number < 2**63:
            raise ValueError("outside the int64 range")
        return number
    if name == "float64":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError
        return float(value)
    if name == "string":
        if not isinstance(value, str):
            raise TypeError
        return value
    if name == "bool":
        if not isinstance(value, bool):
            raise TypeError
        return value
    if name == "timestamp":
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if not isinstance(value, datetime):
            raise TypeError
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    raise TypeError


# -- running realtime views ----------------------------------------------------------------------


def run_realtime(
    view: RealtimeRead, rows: Sequence[OnlineValue | None], request: dict[str, Any], now_us: int
) -> list[Any]:
    """Call the view's function and check its answer; ComputeError 500 naming the view if it fails."""
    from featureplane.definitions.transformation import RealtimeContext  # loaded with the function already

    arguments: list[Any] = []
    for item in view.inputs:
        if item.kind == REQUEST:
            arguments.append({name: request[name] for name in item.fields})
        elif item.kind == CONTEXT:
            arguments.append(RealtimeContext(datetime(1970, 1, 1) + timedelta(microseconds=now_us)))
        else:
            row = rows[item.read]
            fresh = row is not None and (item.ttl_us is None or now_us - row.event_ts < item.ttl_us)
            arguments.append(
                {
                    name: python_value(row.values[index], dtype) if fresh else None  # type: ignore[union-attr]
                    for name, index, dtype in item.features
                }
            )
    try:
        answer = view.function(*arguments)
    except Exception as exc:
        log.warning("realtime feature view %s raised", view.name, exc_info=True)
        raise ComputeError(
            500, f"realtime feature view {view.name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    return check_answer(view.name, view.outputs, answer)


def check_answer(name: str, outputs: Sequence[tuple[str, DataType]], answer: Any) -> list[Any]:
    """The function's values in declared order, as Python values of the declared types."""
    if not isinstance(answer, dict):
        raise ComputeError(
            500,
            f"realtime feature view {name!r} returned {type(answer).__name__}; it must return a dict with "
            f"a value for each of its features ({', '.join(n for n, _ in outputs)})",
        )
    missing = [n for n, _ in outputs if n not in answer]
    if missing:
        raise ComputeError(500, f"realtime feature view {name!r} returned no value for {', '.join(missing)}")
    values = []
    for feature, dtype in outputs:
        value = answer[feature]
        if isinstance(value, float) and math.isnan(value):
            value = None
        try:
            values.append(_coerce(value, dtype))
        except (TypeError, ValueError):
            raise ComputeError(
                500,
                f"realtime feature view {name!r} returned {feature}={describe_value(value)} "
                f"({type(value).__name__}), which is not {dtype}",
            ) from None
    return values


def python_value(stored: Any, dtype: DataType) -> Any:
    """An online store value as the Python value a function receives (timestamps as datetimes)."""
    if stored is None:
        return None
    if dtype.is_array:
        return [python_value(v, dtype.element) for v in stored]  # type: ignore[arg-type]
    if dtype.name == "timestamp" and isinstance(stored, str):
        return _coerce(stored, dtype)
    return stored


def stored_value(value: Any, dtype: DataType) -> Any:
    """A Python value in the online store's form (timestamps as ISO-8601 UTC strings)."""
    if value is None:
        return None
    if dtype.is_array:
        return [stored_value(v, dtype.element) for v in value]  # type: ignore[arg-type]
    if dtype.name == "timestamp":
        return value.isoformat() + "Z"
    return value
