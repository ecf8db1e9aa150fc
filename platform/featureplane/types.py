"""Feature data types.

A type is named by a short string that travels through the registry, the stores and the lookup API:
``int64``, ``float64``, ``string``, ``bool``, ``timestamp`` and ``array<T>``. This module is imported on
the serving path, so it uses the standard library only; Arrow and DuckDB mappings import lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DataType:
    """A feature or join-key type, e.g. ``Int64`` or ``Array(Float64)``."""

    name: str
    element: DataType | None = None

    def __str__(self) -> str:
        return self.name if self.element is None else f"array<{self.element}>"

    def __repr__(self) -> str:
        return _REPR.get(self.name, self.name) if self.element is None else f"Array({self.element!r})"

    @property
    def is_array(self) -> bool:
        return self.element is not None


Int64 = DataType("int64")
Float64 = DataType("float64")
String = DataType("string")
Bool = DataType("bool")
Timestamp = DataType("timestamp")

_SCALARS = {t.name: t for t in (Int64, Float64, String, Bool, Timestamp)}
_REPR = {"int64": "Int64", "float64": "Float64", "string": "String", "bool": "Bool", "timestamp": "Timestamp"}


def Array(element: DataType) -> DataType:
    """An array of ``element`` values, e.g. ``Array(Float64)``."""
    if not isinstance(element, DataType):
        raise TypeError(f"Array() takes a featureplane type such as Float64, not {element!r}")
    if element.is_array:
        raise TypeError("nested arrays are not supported")
    return DataType("array", element)


def parse_type(text: str) -> DataType:
    """Parse the string form (``int64``, ``array<float64>``) back into a DataType."""
    text = text.strip().lower()
    if text in _SCALARS:
        return _SCALARS[text]
    if text.startswith("array<") and text.endswith(">"):
        return Array(parse_type(text[6:-1]))
    raise ValueError(
        f"unknown type {text!r}; expected one of int64, float64, string, bool, timestamp, array<T>"
    )


def to_arrow(dtype: DataType) -> Any:
    import pyarrow as pa

    if dtype.is_array:
        return pa.list_(to_arrow(dtype.element))
    return {
        "int64": pa.int64(),
        "float64": pa.float64(),
        "string": pa.string(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us"),
    }[dtype.name]


def to_sql(dtype: DataType) -> str:
    """The DuckDB/Snowflake-portable SQL type name."""
    if dtype.is_array:
        return f"{to_sql(dtype.element)}[]"
    return {
        "int64": "BIGINT",
        "float64": "DOUBLE",
        "string": "VARCHAR",
        "bool": "BOOLEAN",
        "timestamp": "TIMESTAMP",
    }[dtype.name]


def from_arrow(arrow_type: Any) -> DataType | None:
    """Map an Arrow type to the featureplane type it holds, or None when there is none."""
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_integer(arrow_type):
        return Int64
    if pt.is_floating(arrow_type) or pt.is_decimal(arrow_type):
        return Float64
    if pt.is_string(arrow_type) or pt.is_large_string(arrow_type) or pt.is_string_view(arrow_type):
        return String
    if pt.is_boolean(arrow_type):
        return Bool
    if pt.is_timestamp(arrow_type) or pt.is_date(arrow_type):
        return Timestamp
    if pt.is_list(arrow_type) or pt.is_large_list(arrow_type) or isinstance(arrow_type, pa.ListViewType):
        element = from_arrow(arrow_type.value_type)
        return Array(element) if element is not None and not element.is_array else None
    return None


def compatible(declared: DataType, actual: DataType) -> bool:
    """Whether values of ``actual`` can be stored as ``declared`` without losing meaning.

    Integers widen to floats; everything else must match exactly.
    """
    if declared == actual:
        return True
    if declared == Float64 and actual == Int64:
        return True
    if declared.is_array and actual.is_array:
        return compatible(declared.element, actual.element)
    return False


def api_type(dtype: DataType) -> dict[str, Any]:
    """The ``dataType`` object of the lookup API's metadata."""
    if dtype.is_array:
        return {"type": "array", "elementType": api_type(dtype.element)}
    return {"type": dtype.name}
