"""Feature declarations: what columns a feature view outputs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from featureplane.definitions.base import DefinitionError, caller_location, duration_label, parse_duration
from featureplane.definitions.specs import FeatureSpec
from featureplane.types import Array, DataType, Float64, Int64

# Aggregation functions, by canonical name, with the input types they accept ("numeric", "scalar").
AGGREGATION_FUNCTIONS = {
    "count": "scalar",
    "count_distinct": "scalar",
    "sum": "numeric",
    "mean": "numeric",
    "min": "ordered",
    "max": "ordered",
    "stddev_samp": "numeric",
    "stddev_pop": "numeric",
    "first": "scalar",
    "last": "scalar",
    "last_n": "scalar",
}
FUNCTION_ALIASES = {"stddev": "stddev_samp", "avg": "mean", "average": "mean"}
MAX_LAST_N = 1000
LIFETIME = "lifetime"
_CALL = re.compile(r"^\s*([a-z_]+)\s*\(\s*(\d+)\s*\)\s*$")


@dataclass(frozen=True)
class AggregationFunction:
    """A parameterised aggregation function such as ``last_n(3)``."""

    name: str
    n: int | None = None

    def __str__(self) -> str:
        return f"{self.name}({self.n})" if self.n is not None else self.name


def last_n(n: int) -> AggregationFunction:
    """The ``n`` most recent non-null values in the window, oldest first (an array)."""
    return AggregationFunction("last_n", n)


class LifetimeWindow:
    """A window with no start: everything from ``feature_start_time`` up to the feature time."""

    def __repr__(self) -> str:
        return "LifetimeWindow()"


def _parse_function(function: Any, where: str) -> AggregationFunction:
    if isinstance(function, AggregationFunction):
        parsed = function
    elif isinstance(function, str):
        text = function.strip().lower()
        call = _CALL.match(text)
        parsed = AggregationFunction(call.group(1), int(call.group(2))) if call else AggregationFunction(text)
    else:
        raise DefinitionError(
            f"{where}: function must be a name such as 'sum' or last_n(3), got {function!r}"
        )
    name = FUNCTION_ALIASES.get(parsed.name, parsed.name)
    if name not in AGGREGATION_FUNCTIONS:
        known = ", ".join([*(n for n in AGGREGATION_FUNCTIONS if n != "last_n"), "last_n(n)"])
        raise DefinitionError(f"{where}: unknown aggregation function {str(parsed)!r}; use one of {known}")
    if name == "last_n":
        if parsed.n is None or not 1 <= parsed.n <= MAX_LAST_N:
            raise DefinitionError(
                f"{where}: last_n needs a count between 1 and {MAX_LAST_N}, e.g. last_n(3); got {str(parsed)!r}"
            )
    elif parsed.n is not None:
        raise DefinitionError(f"{where}: {name} takes no argument; got {str(parsed)!r}")
    return AggregationFunction(name, parsed.n)


def _parse_window(window: Any, where: str) -> int | None:
    """Seconds of the window, or None for a lifetime window."""
    if isinstance(window, LifetimeWindow) or (isinstance(window, str) and window.strip().lower() == LIFETIME):
        return None
    value = parse_duration(window, f"{where}: time_window")
    seconds = value.total_seconds()
    if seconds <= 0 or seconds != int(seconds):
        raise DefinitionError(f"{where}: time_window must be a positive whole number of seconds, got {value}")
    return int(seconds)


def output_type(function: str, input_type: DataType) -> DataType:
    """The type of an aggregate's values: counts are Int64, means and deviations Float64, sums keep
    integers, min/max/first/last keep the input type and last_n is an array of it."""
    if function in ("count", "count_distinct"):
        return Int64
    if function in ("mean", "stddev_samp", "stddev_pop"):
        return Float64
    if function == "sum":
        return Int64 if input_type == Int64 else Float64
    if function == "last_n":
        return Array(input_type)
    return input_type


@dataclass(frozen=True)
class Attribute:
    """A row-level feature: a column of the transformation's output, stored as it is."""

    name: str
    dtype: DataType
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, DataType):
            raise DefinitionError(
                f"Attribute {self.name!r}: type must be a featureplane type such as Int64, got {self.dtype!r}"
            )

    def spec(self) -> FeatureSpec:
        return FeatureSpec(name=self.name, dtype=str(self.dtype), kind="attribute", column=self.name)


@dataclass(frozen=True, init=False)
class Aggregate:
    """A sliding-window aggregate of a column of the transformation's output, e.g.
    ``Aggregate("amount", "sum", timedelta(days=7))`` named ``amount_sum_7d``.

    ``column`` is a name or a ``Field`` (whose type is the input type; a bare name means Float64, which
    integer columns widen to). ``function`` is count, count_distinct, sum, mean, min, max, stddev_samp
    (or stddev), stddev_pop, first, last or ``last_n(n)``. ``time_window`` is a duration that is a
    multiple of the view's ``aggregation_interval``, or ``"lifetime"``. The window ending at a time
    ``t`` covers ``[T - time_window, T)`` with ``T`` = ``t`` aligned down to the interval. Nulls are
    ignored; an empty window gives 0 for count, count_distinct and sum, an empty array for last_n and
    null otherwise.
    """

    column: str
    function: str
    window_seconds: int | None
    name: str
    input_type: DataType
    n: int | None = None
    description: str = ""
    location: str = field(default="", compare=False)

    def __init__(
        self,
        column: Any,
        function: str | AggregationFunction,
        time_window: timedelta | str | LifetimeWindow,
        name: str | None = None,
        *,
        dtype: DataType | None = None,
        description: str = "",
    ) -> None:
        location = caller_location()
        where = f"{location}: Aggregate({column!r}, {str(function)!r})"
        column_name, column_type = _column(column, dtype, where)
        parsed = _parse_function(function, where)
        window = _parse_window(time_window, where)
        if name is None:
            label = LIFETIME if window is None else duration_label(window)
            name = f"{column_name}_{parsed.name}" + (f"_{parsed.n}" if parsed.n else "") + f"_{label}"
        set_ = object.__setattr__
        set_(self, "column", column_name)
        set_(self, "function", parsed.name)
        set_(self, "window_seconds", window)
        set_(self, "name", name)
        set_(self, "input_type", column_type)
        set_(self, "n", parsed.n)
        set_(self, "description", description)
        set_(self, "location", location)
        kind = AGGREGATION_FUNCTIONS[parsed.name]
        if column_type.is_array:
            raise DefinitionError(f"{where}: cannot aggregate an array column")
        if kind == "numeric" and column_type not in (Int64, Float64):
            raise DefinitionError(f"{where}: {parsed.name} needs a numeric column (Int64 or Float64)")
        if kind == "ordered" and column_type.name == "bool":
            raise DefinitionError(f"{where}: {parsed.name} of a Bool column is not supported")

    def spec(self) -> FeatureSpec:
        params: dict[str, Any] = {"input_type": str(self.input_type)}
        if self.n is not None:
            params["n"] = self.n
        return FeatureSpec(
            name=self.name,
            dtype=str(output_type(self.function, self.input_type)),
            kind="aggregate",
            column=self.column,
            function=self.function,
            window_seconds=self.window_seconds,
            params=params,
        )


def _column(column: Any, dtype: DataType | None, where: str) -> tuple[str, DataType]:
    from featureplane.definitions.entity import Field

    if isinstance(column, Field):
        return column.name, column.dtype
    if not isinstance(column, str) or not column:
        raise DefinitionError(f"{where}: column must be a column name or a Field, got {column!r}")
    if dtype is not None and not isinstance(dtype, DataType):
        raise DefinitionError(f"{where}: dtype must be a featureplane type such as Int64, got {dtype!r}")
    return column, dtype or Float64
