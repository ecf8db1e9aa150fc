"""What every definition shares: its name, where it was written, and collection during repo loading."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_collector: list[Definition] | None = None


class DefinitionError(ValueError):
    """A definition that is wrong on its own, raised where it is written."""


class Definition:
    """Base of the SDK objects that a feature repository declares."""

    kind: str = "definition"
    name: str
    location: str

    def _register(self, location: str | None = None) -> None:
        self.location = location or caller_location()
        if _collector is not None:
            _collector.append(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def caller_location() -> str:
    """``file:line`` of the first stack frame outside the featureplane package."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_PACKAGE_DIR + os.sep):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


@contextmanager
def collecting() -> Iterator[list[Definition]]:
    """Collect every definition constructed inside the block (used by the repository loader)."""
    global _collector
    previous, _collector = _collector, []
    try:
        yield _collector
    finally:
        _collector = previous


def check_name(kind: str, name: Any, location: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise DefinitionError(
            f"{location}: {kind} name {name!r} is not valid: use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    return name


_DURATION = re.compile(r"^\s*(\d+)\s*(us|ms|s|m|h|d|w)\s*$")
_UNITS = {
    "us": timedelta(microseconds=1),
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_NAMED = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(weeks=1)}


def parse_duration(value: Any, what: str) -> timedelta:
    """A timedelta from a timedelta or a string such as ``"1d"``, ``"12h"``, ``"daily"``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        if value.strip().lower() in _NAMED:
            return _NAMED[value.strip().lower()]
        match = _DURATION.match(value.lower())
        if match:
            return int(match.group(1)) * _UNITS[match.group(2)]
    raise DefinitionError(f"{what} must be a timedelta or a duration like '1d', '12h', '30m'; got {value!r}")


def to_utc_naive(value: Any, what: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise DefinitionError(f"{what} must be a datetime or ISO-8601 string; got {value!r}") from exc
    if not isinstance(value, datetime):
        raise DefinitionError(f"{what} must be a datetime; got {value!r}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def duration_label(seconds: int) -> str:
    """``604800`` -> ``7d``; used for default feature names and readable plans."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
