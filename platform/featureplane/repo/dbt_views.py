"""dbt models in a feature repository: ``DbtModel`` sources resolved against the manifest, and feature
views declared in a model's YAML, with no Python.

A model becomes a feature view when its properties file says so::

    models:
      - name: user_spend_7d
        config:
          meta:
            featureplane:
              feature_view:
                entities: [user]            # or [{name: user, join_keys: [user_id]}] to declare it here
                timestamp_field: ts         # default: the model's event_time
                features:
                  - {name: spend_7d, type: float64}
                  - {name: transactions_7d, type: int64}
                online: true
                ttl: 1d
                batch_schedule: 1d          # default: the model's microbatch batch_size, else 1d
                feature_start_time: "2026-08-01"   # default: the model's microbatch begin

The view is named after the model and reads the model's table through a source of the same name. It is
validated like any other view; problems name the model and the YAML file:line they come from.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

from featureplane.definitions.base import (
    Definition,
    DefinitionError,
    check_name,
    parse_duration,
    to_utc_naive,
)
from featureplane.definitions.entity import Entity
from featureplane.definitions.sources import DataSource, DbtModel
from featureplane.definitions.specs import (
    EntitySpec,
    FeatureSpec,
    FeatureViewSpec,
    FieldSpec,
    SourceSpec,
    Spec,
    TransformationSpec,
    format_time,
    kind_of,
)
from featureplane.definitions.transformation import source_placeholder
from featureplane.repo.errors import Problem
from featureplane.types import parse_type

VIEW_KEYS = (
    "entities",
    "timestamp_field",
    "features",
    "online",
    "offline",
    "ttl",
    "batch_schedule",
    "feature_start_time",
    "owner",
    "description",
    "tags",
    "prevent_destroy",
    "partitions_per_run",
)
FEATURE_KEYS = ("name", "type", "description")
ENTITY_KEYS = ("name", "join_keys", "description")
BATCH_SIZES = {"hour": "1h", "day": "1d"}
META_PATHS = (("config", "meta", "featureplane"), ("meta", "featureplane"))


class SpecDefinition(Definition):
    """A definition that arrives as a finished spec: declared in dbt YAML rather than in Python."""

    def __init__(self, spec: Spec, location: str) -> None:
        self.kind = kind_of(spec)
        self.name = spec.name
        self.location = location
        self._spec = spec

    def spec(self) -> Spec:
        return self._spec


class _Invalid(Exception):
    """A problem in a model's ``feature_view`` meta, at ``keys`` below it."""

    def __init__(self, message: str, *keys: str | int) -> None:
        super().__init__(message)
        self.keys = keys


def dbt_definitions(config: Any, definitions: list[Definition]) -> list[Problem]:
    """Resolve the DbtModel sources among ``definitions`` and append the views declared in dbt (with
    their sources and any entities declared with them). Returns every problem found."""
    from featureplane.dbt import DbtError, dbt_project, load_manifest

    dbt_sources = [d for d in definitions if isinstance(d, DbtModel)]
    try:
        project = dbt_project(config)
    except DbtError as exc:
        return [Problem("dbt project", "", "", str(exc))]
    if project is None:
        return [
            Problem(
                "data source",
                d.name,
                d.location,
                f"reads dbt model {d.model!r} but {config.path} has no dbt: section "
                "(add `dbt: {project_dir: ../dbt}` naming the dbt project)",
            )
            for d in dbt_sources
        ]
    try:
        manifest = load_manifest(project)
    except DbtError as exc:
        return [Problem("dbt project", "", str(project.project_dir), str(exc))]

    problems: list[Problem] = []
    for source in dbt_sources:
        problems += _resolve_source(source, manifest)
    yaml_cache: dict[Path, Any] = {}
    entities: dict[str, tuple[EntitySpec, str]] = {
        d.name: (d.spec(), d.location) for d in definitions if isinstance(d, Entity)
    }
    sources = {d.name: d for d in definitions if isinstance(d, DataSource)}
    for node in manifest.feature_view_models():
        where = _Locator(manifest, node, yaml_cache)
        try:
            specs = _declared_view(manifest, node, where)
        except _Invalid as exc:
            problems.append(Problem("dbt model", node["name"], where(*exc.keys), f"feature view: {exc}"))
            continue
        for spec in specs:
            problem = _add(spec, where, definitions, entities, sources)
            if problem:
                problems.append(problem)
    return problems


def _resolve_source(source: DbtModel, manifest: Any) -> list[Problem]:
    def problem(message: str) -> list[Problem]:
        return [Problem("data source", source.name, source.location, message)]

    node = manifest.model(source.model)
    if node is None:
        return problem(
            f"DbtModel({source.model!r}): the dbt project has no model named {source.model!r} "
            f"(models: {manifest.describe_models()})"
        )
    config = node.get("config") or {}
    if config.get("materialized") == "ephemeral":
        return problem(
            f"dbt model {source.model!r} is ephemeral: dbt builds no table for featureplane to read"
        )
    source.sql_hash = manifest.sql_hash(source.model)
    source.timestamp_field = source.timestamp_field or config.get("event_time")
    source.description = source.description or node.get("description", "")
    if not source.timestamp_field:
        return problem(
            f"DbtModel({source.model!r}) needs timestamp_field= (the model has no event_time config to default to)"
        )
    return []


def _add(
    spec: Spec,
    where: _Locator,
    definitions: list[Definition],
    entities: dict[str, tuple[EntitySpec, str]],
    sources: dict[str, Definition],
) -> Problem | None:
    """Append a declared spec unless the repository already has the same one."""
    location = spec.location
    if isinstance(spec, EntitySpec):
        known = entities.get(spec.name)
        if known is not None:
            if [k.name for k in known[0].join_keys] == [k.name for k in spec.join_keys] and [
                k.dtype for k in known[0].join_keys
            ] == [k.dtype for k in spec.join_keys]:
                return None
            return Problem(
                "dbt model",
                where.model,
                location,
                f"entity {spec.name!r} is declared with join keys "
                f"{', '.join(f'{k.name} {k.dtype}' for k in spec.join_keys)} but {known[1]} declares it with "
                f"{', '.join(f'{k.name} {k.dtype}' for k in known[0].join_keys)}",
            )
        entities[spec.name] = (spec, location)
    if isinstance(spec, SourceSpec):
        known_source = sources.get(spec.name)
        if known_source is not None:
            if isinstance(known_source, DbtModel) and known_source.model == spec.dbt_model:
                return None
            return Problem(
                "dbt model",
                where.model,
                location,
                f"the feature view reads its model through a source named {spec.name!r}, but "
                f"{known_source.location} already defines a different source with that name",
            )
    definitions.append(SpecDefinition(spec, location))
    return None


def _declared_view(manifest: Any, node: dict[str, Any], where: _Locator) -> list[Spec]:
    """The specs a model's ``feature_view`` meta declares: inline entities, its source and the view."""
    model = node["name"]
    namespace = manifest.meta(node)["featureplane"]
    extra = sorted(set(namespace) - {"feature_view"})
    if extra:
        raise _Invalid(f"unknown key(s) under featureplane: {', '.join(extra)} (expected feature_view)")
    raw = namespace["feature_view"]
    if not isinstance(raw, dict):
        raise _Invalid("feature_view must be a mapping of settings (entities, features, ...)")
    unknown = [k for k in raw if k not in VIEW_KEYS]
    if unknown:
        raise _Invalid(
            f"unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(VIEW_KEYS)})", unknown[0]
        )
    config = node.get("config") or {}
    if config.get("materialized") == "ephemeral":
        raise _Invalid("the model is ephemeral: materialize it as a table, incremental model or view")
    check = _Checker(raw)
    try:
        check_name("feature view", model, "")
    except DefinitionError:
        raise _Invalid(f"the model's name {model!r} is not a valid feature view name") from None

    entity_names, entity_specs = _entities(check, where)
    features = _features(check)
    timestamp_field = check.string("timestamp_field") or config.get("event_time")
    if not timestamp_field:
        raise _Invalid("timestamp_field is required (the model has no event_time config to default to)")
    schedule = check.duration("batch_schedule") or parse_duration(
        BATCH_SIZES.get(config.get("batch_size") or "", "1d"), "batch_schedule"
    )
    ttl = check.duration("ttl")
    start = raw.get("feature_start_time") or config.get("begin")
    try:
        start_time = to_utc_naive(_iso(start), "feature_start_time") if start else None
    except DefinitionError as exc:
        raise _Invalid(str(exc), "feature_start_time") from None
    location = where()
    description = check.string("description") or node.get("description", "")
    owner = check.string("owner") or ""
    source = SourceSpec(
        name=model,
        kind="batch",
        timestamp_field=timestamp_field,
        dbt_model=model,
        dbt_sql_hash=manifest.sql_hash(model),
        description=description,
        owner=owner,
        location=location,
    )
    view = FeatureViewSpec(
        name=model,
        kind="batch",
        entities=entity_names,
        join_keys=[],
        sources=[model],
        features=features,
        timestamp_field=timestamp_field,
        transformation=TransformationSpec(
            mode="snowflake_sql",
            function_name=model,
            parameters=[model],
            sql=f"SELECT * FROM {source_placeholder(model)}",
            dbt_sql=node.get("raw_code", ""),
        ),
        feature_start_time=format_time(start_time) if start_time else None,
        batch_schedule_seconds=int(schedule.total_seconds()),
        ttl_seconds=int(ttl.total_seconds()) if ttl else None,
        online=check.boolean("online", False),
        offline=check.boolean("offline", True),
        owner=owner,
        description=description,
        tags=check.tags(),
        prevent_destroy=check.boolean("prevent_destroy", False),
        partitions_per_run=check.integer("partitions_per_run"),
        location=location,
    )
    return [*entity_specs, source, view]


def _entities(check: _Checker, where: _Locator) -> tuple[list[str], list[EntitySpec]]:
    items = check.items(
        "entities", "entities: [user] (names of entities, or {name, join_keys} to declare one)"
    )
    names: list[str] = []
    specs: list[EntitySpec] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            names.append(_name("entity", item, "entities", i))
            continue
        if not isinstance(item, dict) or "name" not in item or "join_keys" not in item:
            raise _Invalid("an entity is a name or a mapping {name, join_keys}", "entities", i)
        unknown = [k for k in item if k not in ENTITY_KEYS]
        if unknown:
            raise _Invalid(
                f"unknown key(s) {', '.join(unknown)} (known: {', '.join(ENTITY_KEYS)})", "entities", i
            )
        name = _name("entity", item["name"], "entities", i)
        keys = item["join_keys"] if isinstance(item["join_keys"], list) else None
        if not keys:
            raise _Invalid("join_keys must be a non-empty list", "entities", i, "join_keys")
        fields = [_field(key, ("entities", i, "join_keys", j)) for j, key in enumerate(keys)]
        specs.append(
            EntitySpec(
                name=name,
                join_keys=fields,
                description=str(item.get("description", "")),
                location=where("entities", i),
            )
        )
        names.append(name)
    return names, specs


def _field(value: Any, keys: tuple) -> FieldSpec:
    """A join key: a column name (a string key) or ``{name, type}``."""
    if isinstance(value, str):
        return FieldSpec(_name("join key", value, *keys), "string")
    if isinstance(value, dict) and set(value) <= {"name", "type"} and "name" in value:
        return FieldSpec(
            _name("join key", value["name"], *keys), _type(value.get("type", "string"), *keys, "type")
        )
    raise _Invalid("a join key is a column name or {name, type}", *keys)


def _features(check: _Checker) -> list[FeatureSpec]:
    items = check.items("features", "features: [{name: ..., type: float64}, ...]")
    features = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "name" not in item or "type" not in item:
            raise _Invalid(
                "a feature is a mapping {name, type} (type: int64, float64, string, bool, timestamp, array<T>)",
                "features",
                i,
            )
        unknown = [k for k in item if k not in FEATURE_KEYS]
        if unknown:
            raise _Invalid(
                f"unknown key(s) {', '.join(unknown)} (known: {', '.join(FEATURE_KEYS)})", "features", i
            )
        name = _name("feature", item["name"], "features", i)
        features.append(FeatureSpec(name=name, dtype=_type(item["type"], "features", i, "type"), column=name))
    return features


def _name(what: str, value: Any, *keys: str | int) -> str:
    try:
        return check_name(what, value, "")
    except DefinitionError as exc:
        raise _Invalid(str(exc).removeprefix(": "), *keys) from None


def _type(value: Any, *keys: str | int) -> str:
    try:
        return str(parse_type(str(value)))
    except ValueError as exc:
        raise _Invalid(str(exc), *keys) from None


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


class _Checker:
    """Typed access to the ``feature_view`` settings, raising _Invalid at the offending key."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def items(self, key: str, example: str) -> list[Any]:
        value = self.raw.get(key)
        if not isinstance(value, list) or not value:
            raise _Invalid(
                f"{key} is required as a non-empty list: {example}", *([key] if key in self.raw else [])
            )
        return value

    def string(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is not None and not isinstance(value, str):
            raise _Invalid(f"{key} must be a string, got {value!r}", key)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise _Invalid(f"{key} must be true or false, got {value!r}", key)
        return value

    def integer(self, key: str) -> int | None:
        value = self.raw.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise _Invalid(f"{key} must be a positive integer, got {value!r}", key)
        return value

    def duration(self, key: str) -> Any:
        value = self.raw.get(key)
        if value is None:
            return None
        try:
            return parse_duration(value, key)
        except DefinitionError as exc:
            raise _Invalid(str(exc), key) from None

    def tags(self) -> dict[str, str]:
        value = self.raw.get("tags") or {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise _Invalid("tags must be a mapping of strings", "tags")
        return {str(k): v for k, v in value.items()}


class _Locator:
    """``file:line`` of a key under a model's ``feature_view`` meta in its YAML file (the deepest key
    that exists), falling back to the model's entry, then to its SQL file."""

    def __init__(self, manifest: Any, node: dict[str, Any], cache: dict[Path, Any]) -> None:
        self.model = node["name"]
        self.yaml = manifest.yaml_path(node)
        self.sql = manifest.sql_path(node)
        self.cache = cache

    def __call__(self, *keys: str | int) -> str:
        entry = self._model_entry()
        if entry is None:
            return f"{self.sql}:1"
        line = entry.start_mark.line + 1
        for prefix in META_PATHS:
            node, found = entry, None
            for key in (*prefix, "feature_view", *keys):
                step = _child(node, key)
                if step is None:
                    break
                found, node = step
            if found is not None and found > line:
                line = found
        return f"{_display(self.yaml)}:{line}"

    def _model_entry(self) -> Any:
        if self.yaml is None:
            return None
        if self.yaml not in self.cache:
            import yaml

            try:
                self.cache[self.yaml] = yaml.compose(self.yaml.read_text())
            except (OSError, yaml.YAMLError):
                self.cache[self.yaml] = None
        root = self.cache[self.yaml]
        models = _child(root, "models")
        if models is None:
            return None
        for item in getattr(models[1], "value", []):
            name = _child(item, "name")
            if name is not None and getattr(name[1], "value", None) == self.model:
                return item
        return None


def _child(node: Any, key: str | int) -> tuple[int, Any] | None:
    """(line, node) of a mapping's key or a sequence's item."""
    import yaml

    if isinstance(key, int) and isinstance(node, yaml.SequenceNode):
        if 0 <= key < len(node.value):
            item = node.value[key]
            return item.start_mark.line + 1, item
        return None
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if getattr(key_node, "value", None) == key:
                return key_node.start_mark.line + 1, value_node
    return None


def _display(path: Path | None) -> str:
    return os.path.abspath(path) if path else ""
