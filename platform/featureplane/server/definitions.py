"""Definitions sent by a client, checked before the server plans with them.

The client loads and validates its repository; the server does not trust it to have done so. Every spec
must have the fields of its kind with the types they declare, every name (of the object, and of the
entities, sources, views and features it refers to) must be a plain identifier, and references must
resolve within the set. Anything else is a 400 naming the object and the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any

from featureplane.definitions.base import NAME_PATTERN
from featureplane.definitions.specs import (
    CLASS_OF,
    FEATURE_VIEW,
    KINDS,
    DefinitionSet,
    FeatureServiceSpec,
    FeatureSpec,
    FeatureViewSpec,
    FieldSpec,
    ServiceFeatures,
    SourceSpec,
    TransformationSpec,
    from_dict,
    parse_time,
)
from featureplane.registry.base import RegistryError

_NESTED = {FieldSpec, FeatureSpec, TransformationSpec, ServiceFeatures}


class DefinitionsInvalid(RegistryError):
    """The definitions a client sent cannot be planned."""


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _matches(value: Any, annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if origin is dict or annotation is dict:
        key, item = args or (str, Any)
        return isinstance(value, dict) and all(
            _matches(k, key) and _matches(v, item) for k, v in value.items()
        )
    if annotation in _NESTED:
        return isinstance(value, dict) and not _problems(annotation, value, "")
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return False


def _problems(cls: type, data: dict[str, Any], where: str) -> list[str]:
    hints = _hints(cls)
    problems = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in data:
            if required:
                problems.append(f"{where}{f.name} is missing")
            continue
        if not _matches(data[f.name], hints[f.name]):
            problems.append(f"{where}{f.name} does not have the type {hints[f.name]}")
    return problems


def _names(spec: Any) -> list[tuple[str, Any]]:
    """Every name a spec declares or refers to, with the field that holds it."""
    found: list[tuple[str, Any]] = [("name", spec.name)]
    keys = list(getattr(spec, "join_keys", [])) + list(getattr(spec, "request_schema", []))
    if isinstance(spec, SourceSpec):
        keys += spec.schema
    found += [("join_keys/schema", k.name) for k in keys]
    if isinstance(spec, FeatureViewSpec):
        found += [("entities", e) for e in spec.entities] + [("sources", s) for s in spec.sources]
        found += [("features", f.name) for f in spec.features]
    if isinstance(spec, FeatureServiceSpec):
        found += [("features.view", f.view) for f in spec.features]
        found += [("features", n) for f in spec.features for n in f.features]
    return found


def parse_definitions(payload: dict[str, list[dict[str, Any]]]) -> DefinitionSet:
    """A DefinitionSet from ``{kind: [spec, ...]}``; DefinitionsInvalid lists what is wrong."""
    problems: list[str] = []
    definitions = DefinitionSet()
    for kind, items in payload.items():
        if kind not in KINDS:
            problems.append(f"definitions: unknown kind {kind!r:.40} (expected {', '.join(KINDS)})")
            continue
        for i, item in enumerate(items):
            label = f"{kind}[{i}]" + (f" {item.get('name')!r:.60}" if isinstance(item, dict) else "")
            if not isinstance(item, dict):
                problems.append(f"{label}: expected an object")
                continue
            found = _problems(CLASS_OF[kind], item, "")
            if found:
                problems.append(f"{label}: {'; '.join(found[:3])}")
                continue
            spec = from_dict(kind, item)
            bad = [
                f"{where} {name!r:.60}" for where, name in _names(spec) if not NAME_PATTERN.fullmatch(name)
            ]
            if bad:
                problems.append(
                    f"{label}: not a plain name (letters, digits, underscores): {', '.join(bad[:3])}"
                )
                continue
            if spec.name in definitions.by_kind(kind):
                problems.append(f"{label}: duplicate name")
                continue
            if kind == FEATURE_VIEW and spec.feature_start_time is not None:  # type: ignore[union-attr]
                try:
                    parse_time(spec.feature_start_time)  # type: ignore[union-attr]
                except ValueError:
                    problems.append(f"{label}: feature_start_time is not an ISO-8601 time")
                    continue
            definitions.add(spec)
    problems += _dangling(definitions)
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise DefinitionsInvalid("definitions are not valid: " + " | ".join(shown))
    return definitions


def _dangling(definitions: DefinitionSet) -> list[str]:
    problems = []
    for view in definitions.feature_views.values():
        for entity in view.entities:
            if entity not in definitions.entities:
                problems.append(f"feature_view {view.name!r}: no entity {entity!r}")
        for source in view.sources:
            if source not in definitions.sources and source not in definitions.feature_views:
                problems.append(f"feature_view {view.name!r}: no source or feature view {source!r}")
    for service in definitions.feature_services.values():
        for part in service.features:
            if part.view not in definitions.feature_views:
                problems.append(f"feature_service {service.name!r}: no feature view {part.view!r}")
    return problems
