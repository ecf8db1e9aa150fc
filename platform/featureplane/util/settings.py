"""Typed settings from YAML mappings: each section of featureplane.yaml is a dataclass, checked field by
field against the file, with every problem named by its key path.

A field's annotation says what it accepts (``str``, ``int``, ``float``, ``bool``, ``Path``, ``Literal``,
``dict``, ``list[...]``, a nested section, or ``... | None``); ``setting()`` adds a default, bounds and a
description. Unknown keys are refused with the known ones and a "did you mean". Values that came from
``${VAR}`` interpolation are strings, so numbers and booleans are also accepted as their usual
spellings. Standard library only: the lookup service reads its settings through this.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Section")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class SettingsError(ValueError):
    """One or more settings are wrong; each line names the key path and what is expected."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def setting(
    default: Any = dataclasses.MISSING,
    *,
    doc: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    secret: bool = False,
    parse: Callable[[Any, str, Any], Any] | None = None,
) -> Any:
    """A field of a settings section. ``parse(value, where, context)`` replaces the type-driven check."""
    metadata = {"doc": doc, "minimum": minimum, "maximum": maximum, "secret": secret, "parse": parse}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class Section:
    """A checked section: typed attributes, also read like the mapping it came from (``get``, ``in`` and
    iteration see only the keys the file set, so ``"ingest_log" in section`` means "configured")."""

    _given: frozenset[str] = dataclasses.field(default=frozenset(), repr=False, compare=False)
    doc: ClassVar[str] = ""

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self._given else default

    def __getitem__(self, key: str) -> Any:
        if key not in self._given:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self._given

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._given))

    def __bool__(self) -> bool:
        return bool(self._given)

    def keys(self) -> list[str]:
        return sorted(self._given)

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def as_dict(self) -> dict[str, Any]:
        """The keys the file set, with their checked values."""
        return dict(self.items())

    def __repr__(self) -> str:
        shown = []
        for f in settings_fields(type(self)):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def settings_fields(model: type[Section]) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(model) if not f.name.startswith("_")]


def parse_section(model: type[T], raw: Any, where: str, context: Any = None) -> T:
    """``raw`` (a mapping from the file, or None for an absent section) checked against ``model``.
    Raises SettingsError listing every problem."""
    problems: list[str] = []
    value = _parse_model(model, raw, where, context, problems)
    if problems:
        raise SettingsError(problems)
    return value


def _parse_model(model: type[T], raw: Any, where: str, context: Any, problems: list[str]) -> T:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a mapping, got {_describe(raw)}")
        raw = {}
    known = {f.name: f for f in settings_fields(model)}
    hints = typing.get_type_hints(model)
    for key in raw:
        if key not in known:
            problems.append(f"{where}.{key}: unknown key{_did_you_mean(str(key), known)}")
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{where}.{name} is required{_doc(f)}")
            continue
        here = f"{where}.{name}"
        parse = f.metadata.get("parse")
        try:
            if parse is not None:
                values[name] = parse(raw[name], here, context)
            else:
                values[name] = _convert(raw[name], hints[name], here, f.metadata, context, problems)
        except SettingsError as exc:
            problems.extend(exc.problems)
    given = frozenset(k for k in raw if k in known)
    try:
        return model(_given=given, **values)
    except TypeError:  # a required value was wrong: already reported
        return model.__new__(model)


def _convert(value: Any, annotation: Any, where: str, meta: Any, context: Any, problems: list[str]) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return None
        if len(options) == 1:
            return _convert(value, options[0], where, meta, context, problems)
        for option in options:  # the first that accepts it
            attempt: list[str] = []
            converted = _convert(value, option, where, meta, context, attempt)
            if not attempt:
                return converted
        problems.append(f"{where} must be {' or '.join(_name(o) for o in options)}, got {_describe(value)}")
        return None
    if origin is typing.Literal:
        if value in args:
            return value
        choices = ", ".join(repr(a) for a in args)
        problems.append(
            f"{where} must be one of {choices}, got {_describe(value)}{_did_you_mean(value, args)}"
        )
        return None
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return _parse_model(annotation, value, where, context, problems)
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{where} must be a list, got {_describe(value)}")
            return []
        return [_convert(v, args[0], f"{where}[{i}]", meta, context, problems) for i, v in enumerate(value)]
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            problems.append(f"{where} must be a mapping, got {_describe(value)}")
            return {}
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        problems.append(f"{where} must be true or false, got {_describe(value)}")
        return None
    if annotation in (int, float):
        number = _number(value, annotation)
        if number is None:
            kind = "an integer" if annotation is int else "a number"
            problems.append(f"{where} must be {kind}, got {_describe(value)}")
            return None
        low, high = meta.get("minimum"), meta.get("maximum")
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = (
                f"between {low} and {high}"
                if low is not None and high is not None
                else (f"at least {low}" if low is not None else f"at most {high}")
            )
            problems.append(f"{where} must be {bounds}, got {_describe(value)}")
        return number
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        problems.append(f"{where} must be a string, got {_describe(value)}")
        return None
    if annotation is Path:
        if not isinstance(value, str) or not value:
            problems.append(f"{where} must be a path, got {_describe(value)}")
            return None
        resolve = getattr(context, "resolve", None)
        return resolve(value) if resolve else Path(value)
    raise TypeError(f"settings field {where} has an unsupported annotation {annotation!r}")


def _number(value: Any, kind: type) -> int | float | None:
    if isinstance(value, bool):
        return None
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return None
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _name(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def _describe(value: Any) -> str:
    """A value as an error message shows it: short, whatever it is."""
    text = (
        repr(value) if isinstance(value, str | int | float | bool) or value is None else type(value).__name__
    )
    return text if len(text) <= 80 else text[:77] + "..."


def _did_you_mean(value: Any, known: Any) -> str:
    names = [str(k) for k in known]
    close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6) if isinstance(value, str) else []
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(sorted(names))})" if isinstance(known, dict) else ""


def _doc(f: dataclasses.Field) -> str:
    doc = f.metadata.get("doc")
    return f": {doc}" if doc else ""
