"""``mode="pandas"`` stream transformations: a batch's records as one DataFrame in, a DataFrame out.

The frame has a row per record (indexed by the record's identity, ``<shard>:<sequence number>``) and a column per field,
typed from the values (nullable ``Int64``, ``Float64`` and ``boolean`` for numbers and flags, so an
integer column with gaps stays integer; ``datetime64`` for the event time). The function returns a
DataFrame whose rows are rows of its input, under their input index labels, changed or not: a row
left out is a record dropped by the transformation. Its rows then go through the same checks as a
``python`` transformation's dicts, so both modes give the same tiles for the same records.

When the function fails on the batch, it is applied again to each record on its own, so one bad
record is refused (invalid, with the error) and the others are applied. Imported only for views in
this mode: the lookup path and the Lambda package stay without pandas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

Outcome = dict[str, Any] | ValueError | None
Item = tuple[str, dict[str, Any]]  # a record's label and its fields


def transform_batch(function: Callable[[pd.DataFrame], Any], items: Sequence[Item]) -> dict[str, Outcome]:
    """Each item's row after ``function`` (by its label): a dict, None (dropped) or the ValueError
    that refuses it."""
    if not items:
        return {}
    try:
        return _apply(function, items)
    except ValueError:
        if len(items) == 1:
            return {items[0][0]: _refusal(function, items[0])}
    return {item[0]: _refusal(function, item) for item in items}


def _refusal(function: Callable[[pd.DataFrame], Any], item: Item) -> Outcome:
    try:
        return _apply(function, [item])[item[0]]
    except ValueError as exc:
        return exc


def _apply(function: Callable[[pd.DataFrame], Any], items: Sequence[Item]) -> dict[str, Outcome]:
    labels = [label for label, _ in items]
    columns: dict[str, None] = {}
    for _, data in items:
        columns.update(dict.fromkeys(data))
    frame = pd.DataFrame(
        {c: _column([data.get(c) for _, data in items]) for c in columns}, index=pd.Index(labels)
    )
    try:
        out = function(frame)
    except Exception as exc:
        raise ValueError(f"the transformation failed: {exc!r}") from exc
    if not isinstance(out, pd.DataFrame):
        raise ValueError(f"the transformation returned {type(out).__name__}, not a DataFrame")
    wanted = set(labels)
    strays = [label for label in out.index if label not in wanted]
    if strays or not out.index.is_unique:
        raise ValueError(
            "the transformation returned rows that are not rows of its input "
            f"(index {strays[0] if strays else 'repeated'!r}): filter or change the rows, keeping their index"
        )
    result: dict[str, Outcome] = dict.fromkeys(labels)
    names = [str(c) for c in out.columns]
    for label, values in zip(out.index, out.itertuples(index=False, name=None), strict=True):
        result[label] = {name: _python(v) for name, v in zip(names, values, strict=True)}
    return result


def _column(values: list[Any]) -> Any:
    """The values as a typed array: nullable integers, floats and booleans, datetimes; else as pandas
    infers them (strings) or objects (mixed values, which the checks after the function report)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.array(values, dtype="boolean")
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        if all(-(2**63) <= v < 2**63 for v in present):
            return pd.array(values, dtype="Int64")
    elif present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pd.array(values, dtype="Float64")
    elif present and all(isinstance(v, datetime) for v in present):
        return pd.to_datetime(pd.Series(values, dtype=object)).array
    elif present and all(isinstance(v, str) for v in present):
        return pd.array(values)
    return pd.array(values, dtype=object)


def _python(value: Any) -> Any:
    """A frame's value as the row checks take it: Python scalars, None for missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).to_pydatetime()
    return value
