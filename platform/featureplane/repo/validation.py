"""Validation of a repository's definitions, reporting every problem with its object and file:line.

Two passes: ``compile_repository`` checks what the definitions say on their own (names, references,
schedules, windows, services); ``check_schemas`` asks the engine for each SQL view's output schema and
checks join keys, the timestamp and feature types against it, without running the transformation.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from featureplane.definitions.base import Definition, DefinitionError
from featureplane.definitions.specs import (
    FEATURE_SERVICE,
    FEATURE_VIEW,
    DefinitionSet,
    FeatureViewSpec,
    kind_of,
)
from featureplane.monitoring.expectations import expectation_problems
from featureplane.monitoring.freshness import freshness_problems
from featureplane.repo.errors import Problem, RepositoryError
from featureplane.repo.loader import Repository
from featureplane.repo.stream_validation import stream_source_problems, stream_view_problems
from featureplane.types import Timestamp, compatible

if TYPE_CHECKING:
    from featureplane.compute.base import Engine

log = logging.getLogger("featureplane")

DAY = 86400
SUPPORTED_SCHEDULES = [h * 3600 for h in (1, 2, 3, 4, 6, 8, 12)] + [DAY]
KIND_LABEL = {
    "entity": "entity",
    "data_source": "data source",
    "feature_view": "feature view",
    "feature_service": "feature service",
}


def compile_repository(repo: Repository) -> DefinitionSet:
    """Turn the repository's definitions into specs and check them; raise RepositoryError listing all
    problems."""
    problems: list[Problem] = []
    definitions = DefinitionSet()
    seen: dict[tuple[str, str], Definition] = {}
    for definition in repo.definitions:
        try:
            spec = definition.spec()
        except DefinitionError as exc:
            problems.append(
                Problem(KIND_LABEL.get(definition.kind, definition.kind), definition.name, "", str(exc))
            )
            continue
        key = (kind_of(spec), spec.name)
        if key in seen:
            first = seen[key]
            problems.append(
                Problem(
                    KIND_LABEL[key[0]],
                    spec.name,
                    definition.location,
                    f"duplicate name: also defined at {first.location}",
                )
            )
            continue
        seen[key] = definition
        definitions.add(spec)
    for name, view in list(definitions.feature_views.items()):
        if view.is_realtime:  # keyed by the entities of the views it reads
            inputs = [definitions.feature_views[s] for s in view.sources if s in definitions.feature_views]
            entities = list(dict.fromkeys(e for v in inputs for e in v.entities))
            definitions.feature_views[name] = dataclasses.replace(view, entities=entities)
    for name, view in list(definitions.feature_views.items()):
        if not view.join_keys and all(e in definitions.entities for e in view.entities):
            keys = []
            for entity in view.entities:
                keys += [
                    k for k in definitions.entities[entity].join_keys if k.name not in [x.name for x in keys]
                ]
            definitions.feature_views[name] = dataclasses.replace(view, join_keys=keys)
    for name, service in list(definitions.feature_services.items()):
        # A view listed by name (declared in dbt) means all of its features.
        if any(not part.features and part.view in definitions.feature_views for part in service.features):
            parts = [
                dataclasses.replace(part, features=definitions.feature_views[part.view].feature_names)
                if not part.features and part.view in definitions.feature_views
                else part
                for part in service.features
            ]
            definitions.feature_services[name] = dataclasses.replace(service, features=parts)
    problems += validate(definitions)
    if problems:
        raise RepositoryError(problems)
    return definitions


def validate(defs: DefinitionSet) -> list[Problem]:
    problems: list[Problem] = []
    for source in defs.sources.values():
        problems += stream_source_problems(source, defs)
    for view in defs.feature_views.values():
        problems += _validate_view(view, defs)
    for service in defs.feature_services.values():
        label = KIND_LABEL[FEATURE_SERVICE]
        seen_views = set()
        request_fields: dict[str, tuple[str, str]] = {}
        for part in service.features:
            view = defs.feature_views.get(part.view)
            if view is None:
                problems.append(
                    Problem(label, service.name, service.location, f"unknown feature view {part.view!r}")
                )
                continue
            if part.view in seen_views:
                problems.append(
                    Problem(
                        label, service.name, service.location, f"feature view {part.view!r} is listed twice"
                    )
                )
            seen_views.add(part.view)
            known = set(view.feature_names)
            for feature in part.features:
                if feature not in known:
                    problems.append(
                        Problem(
                            label,
                            service.name,
                            service.location,
                            f"feature view {part.view!r} has no feature {feature!r} (it has {', '.join(view.feature_names)})",
                        )
                    )
            for field in view.request_schema:
                declared = request_fields.setdefault(field.name, (field.dtype, part.view))
                if declared[0] != field.dtype:
                    problems.append(
                        Problem(
                            label,
                            service.name,
                            service.location,
                            f"request field {field.name!r} is {field.dtype} in {part.view!r} but {declared[0]} "
                            f"in {declared[1]!r}",
                        )
                    )
            if len(set(part.features)) != len(part.features):
                problems.append(
                    Problem(
                        label, service.name, service.location, f"a feature of {part.view!r} is selected twice"
                    )
                )
    return problems


def _validate_retention(view: FeatureViewSpec, problem: Callable[[str], Problem]) -> list[Problem]:
    """An aggregate view's retention must keep the tiles its current values are rolled up from (the
    longest window, a partition and the look-back); lifetime aggregates need the whole history."""
    retention = view.offline_retention_seconds
    if retention is None:
        return []
    if retention <= 0:
        return [problem(f"offline_retention must be positive, got {timedelta(seconds=retention)}")]
    if not view.is_aggregate:
        return []
    from featureplane.compute.aggregation.online import lifetime_features
    from featureplane.compute.base import lookback

    lifetime = [f.name for f in lifetime_features(view)]
    if lifetime:
        return [
            problem(
                f"offline_retention cannot apply to lifetime aggregates ({', '.join(lifetime)}): they need the "
                "whole history; give them a time_window or drop offline_retention"
            )
        ]
    longest = max((f.window_seconds or 0) for f in view.features if f.kind == "aggregate")
    needed = timedelta(seconds=longest + (view.batch_schedule_seconds or 0)) + lookback(view)
    if timedelta(seconds=retention) < needed:
        return [
            problem(
                f"offline_retention {timedelta(seconds=retention)} is shorter than the longest time_window "
                f"plus a batch_schedule and the look-back ({needed}): current values could not be rolled up"
            )
        ]
    return []


def _validate_view(view: FeatureViewSpec, defs: DefinitionSet) -> list[Problem]:
    label = KIND_LABEL[FEATURE_VIEW]

    def problem(message: str) -> Problem:
        return Problem(label, view.name, view.location, message)

    problems = []
    for entity in view.entities:
        if entity not in defs.entities:
            problems.append(problem(f"unknown entity {entity!r}"))
    for source in view.sources:
        if source not in defs.sources and source not in defs.feature_views:
            problems.append(problem(f"unknown source {source!r}"))
    names = [f.name for f in view.features]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(problem(f"feature name(s) declared twice: {', '.join(duplicates)}"))
    clashes = sorted(set(names) & ({k.name for k in view.join_keys} | {view.timestamp_field}))
    if clashes:
        problems.append(
            problem(f"feature name(s) {', '.join(clashes)} clash with a join key or the timestamp field")
        )
    if view.ttl_seconds is not None and view.ttl_seconds <= 0:
        problems.append(problem(f"ttl must be positive, got {timedelta(seconds=view.ttl_seconds)}"))
    problems += _validate_retention(view, problem)
    if view.is_batch:
        problems += _validate_schedule(view, problem)
        for source in view.sources:
            if source in defs.sources and defs.sources[source].kind == "push":
                problems.append(
                    problem(
                        f"source {source!r} is a PushSource: batch feature views read batch sources; "
                        "records pushed to it feed FeatureTables that name it as their source"
                    )
                )
        problems += _validate_aggregates(view, problem)
    if view.kind == "table":
        problems += _validate_table(view, defs, problem)
    if view.is_realtime:
        problems += _validate_realtime(view, defs, problem)
    if view.is_stream:
        problems += stream_view_problems(view, defs, problem)
    problems += [problem(message) for message in expectation_problems(view) + freshness_problems(view)]
    return problems


def _validate_table(view: FeatureViewSpec, defs: DefinitionSet, problem) -> list[Problem]:
    """A FeatureTable's features are attributes, and its push source has every column it stores."""
    problems = []
    for feature in view.features:
        if feature.kind != "attribute":
            problems.append(problem(f"feature {feature.name!r}: a FeatureTable stores attributes only"))
    clash = defs.sources.get(view.name)
    if clash is not None and clash.kind == "push":
        problems.append(
            problem(f"a PushSource is also named {view.name!r}: ingest records could not tell them apart")
        )
    for name in view.sources:
        source = defs.sources.get(name)
        if source is None:
            continue
        if source.kind != "push":
            problems.append(
                problem(f"source {name!r} is a {source.kind} source; a FeatureTable's source is a PushSource")
            )
            continue
        columns = {f.name: f.type for f in source.schema}
        wanted = [(k.name, k.type) for k in view.join_keys]
        wanted.append((view.timestamp_field, Timestamp))
        wanted += [(f.name, f.type) for f in view.features]
        for column, dtype in wanted:
            if column not in columns:
                problems.append(
                    problem(f"push source {name!r} has no field {column!r} (it has {', '.join(columns)})")
                )
            elif columns[column] != dtype:
                problems.append(
                    problem(
                        f"field {column!r} is {columns[column]!r} in push source {name!r} but {dtype!r} here"
                    )
                )
    return problems


def _validate_aggregates(view: FeatureViewSpec, problem) -> list[Problem]:
    interval = view.aggregation_interval_seconds
    aggregates = [f for f in view.features if f.kind == "aggregate"]
    if not aggregates:
        return (
            [problem("aggregation_interval is set but no feature is an Aggregate(...)")] if interval else []
        )
    if not interval:
        return [
            problem(
                "Aggregate features need an aggregation_interval (the size of the stored partial "
                "aggregates), e.g. aggregation_interval=timedelta(hours=1)"
            )
        ]
    problems = []
    if len(aggregates) != len(view.features):
        attributes = ", ".join(f.name for f in view.features if f.kind != "aggregate")
        problems.append(
            problem(
                f"mixes Attribute features ({attributes}) with Aggregate features; put them in separate views"
            )
        )
    schedule = view.batch_schedule_seconds or 0
    if interval <= 0 or (schedule and schedule % interval):
        problems.append(
            problem(
                f"aggregation_interval {timedelta(seconds=interval)} does not divide batch_schedule "
                f"{timedelta(seconds=schedule)}: each partition must hold whole intervals"
            )
        )
        return problems
    if view.ttl_seconds is not None:
        problems.append(
            problem("ttl does not apply to Aggregate features: their time windows decide what counts")
        )
    for feature in aggregates:
        window = feature.window_seconds
        if window is not None and window % interval:
            problems.append(
                problem(
                    f"feature {feature.name!r}: time_window {timedelta(seconds=window)} is not a multiple of "
                    f"aggregation_interval {timedelta(seconds=interval)}"
                )
            )
    return problems


def _validate_realtime(view: FeatureViewSpec, defs: DefinitionSet, problem) -> list[Problem]:
    problems = []
    for source in view.sources:
        if source in defs.sources:
            problems.append(
                problem(
                    f"reads data source {source!r}; a realtime view reads a RequestSource and feature views"
                )
            )
            continue
        other = defs.feature_views.get(source)
        if other is None:
            continue  # reported as an unknown source
        if other.is_realtime:
            problems.append(
                problem(f"reads realtime feature view {source!r}; it can read batch feature views only")
            )
        elif not other.online:
            problems.append(
                problem(
                    f"reads feature view {source!r}, which is not online (online=False): it could not be served"
                )
            )
    names = [f.name for f in view.request_schema]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(problem(f"request field(s) declared twice: {', '.join(duplicates)}"))
    clashes = sorted(set(names) & set(view.join_key_names))
    if clashes:
        problems.append(problem(f"request field(s) {', '.join(clashes)} clash with a join key"))
    return problems


def _validate_schedule(view: FeatureViewSpec, problem) -> list[Problem]:
    problems = []
    seconds = view.batch_schedule_seconds or 0
    if seconds not in SUPPORTED_SCHEDULES:
        allowed = ", ".join(f"{s // 3600}h" for s in SUPPORTED_SCHEDULES[:-1]) + ", 1d"
        problems.append(
            problem(f"batch_schedule {timedelta(seconds=seconds)} is not supported; use one of {allowed}")
        )
        return problems
    if (view.online or view.offline) and not view.feature_start_time:
        problems.append(problem("feature_start_time is required for a materialized view (online or offline)"))
    start = view.start
    if start is not None:
        since_midnight = (start - datetime(start.year, start.month, start.day)).total_seconds()
        if since_midnight % seconds != 0:
            problems.append(
                problem(
                    f"feature_start_time {start.isoformat()} is not aligned to batch_schedule "
                    f"{timedelta(seconds=seconds)} (partitions start at multiples of it from midnight UTC)"
                )
            )
    if view.partitions_per_run is not None and (
        not isinstance(view.partitions_per_run, int) or view.partitions_per_run < 1
    ):
        problems.append(
            problem(f"partitions_per_run must be a positive integer, got {view.partitions_per_run!r}")
        )
    return problems


def check_schemas(defs: DefinitionSet, engine: Engine) -> DefinitionSet:
    """Check sources and SQL views against the engine; fill in inferred timestamp fields.

    Raises RepositoryError with every problem found."""
    problems: list[Problem] = []
    unbuilt = set()
    for source in defs.sources.values():
        note = engine.not_built_yet(source)
        if note:
            unbuilt.add(source.name)
            log.warning(
                "note: source %r: %s; the views on it are checked when they materialize", source.name, note
            )
            continue
        message = engine.check_source(source)
        if message:
            problems.append(Problem(KIND_LABEL["data_source"], source.name, source.location, message))
    if problems:
        raise RepositoryError(problems)
    resolved = DefinitionSet(
        entities=dict(defs.entities), sources=dict(defs.sources), feature_services=dict(defs.feature_services)
    )
    for view in defs.feature_views.values():
        if unbuilt & set(view.sources):
            view_problems = (
                []
                if view.timestamp_field
                else [
                    Problem(
                        KIND_LABEL[FEATURE_VIEW],
                        view.name,
                        view.location,
                        "set timestamp_field: its source is not built yet, so it cannot be inferred",
                    )
                ]
            )
        else:
            view, view_problems = _check_view_schema(view, defs, engine)
        problems += view_problems
        resolved.feature_views[view.name] = view
    if problems:
        raise RepositoryError(problems)
    return resolved


def _check_aggregate_inputs(view: FeatureViewSpec, by_name: dict, output: str, problem) -> list[Problem]:
    from featureplane.compute.aggregation.tiles import input_columns, typed_input_columns

    problems = []
    typed = typed_input_columns(view)
    for column, declared in input_columns(view).items():
        users = ", ".join(f.name for f in view.features if f.kind == "aggregate" and f.column == column)
        found = by_name.get(column.lower())
        if found is None:
            problems.append(
                problem(
                    f"column {column!r} (aggregated by {users}) is missing from the output schema ({output})"
                )
            )
        elif column in typed and (found[1] is None or not compatible(declared, found[1])):
            problems.append(
                problem(
                    f"column {column!r} (aggregated by {users}) is {_show(found[1])} in the output but is read as "
                    f"{declared!r}; declare its type with Aggregate(Field({column!r}, <type>), ...)"
                )
            )
    return problems


def _show(dtype: object) -> str:
    return repr(dtype) if dtype is not None else "of a type featureplane cannot store"


def _check_view_schema(
    view: FeatureViewSpec, defs: DefinitionSet, engine: Engine
) -> tuple[FeatureViewSpec, list[Problem]]:
    label = KIND_LABEL[FEATURE_VIEW]

    def problem(message: str) -> Problem:
        return Problem(label, view.name, view.location, message)

    if not view.is_batch:
        return view, []
    try:
        columns = engine.describe(view, defs.sources)
    except Exception as exc:
        return view, [
            problem(
                f"the transformation does not compile on the {engine.name} engine: {str(exc).splitlines()[0]}"
            )
        ]
    if columns is None:
        if not view.timestamp_field:
            return view, [
                problem(
                    "timestamp_field is required for a Python-mode view (its output schema is only known when it runs)"
                )
            ]
        return view, []
    by_name = {name.lower(): (name, dtype) for name, dtype in columns}
    output = ", ".join(f"{n} {d!r}" if d else n for n, d in columns)
    problems = []
    if not view.timestamp_field:
        candidates = [
            name
            for name, dtype in columns
            if dtype == Timestamp and name not in view.feature_names and name not in view.join_key_names
        ]
        if len(candidates) != 1:
            return view, [problem(f"set timestamp_field: cannot infer it from the output ({output})")]
        view = dataclasses.replace(view, timestamp_field=candidates[0])
    for key in view.join_keys:
        found = by_name.get(key.name.lower())
        if found is None:
            problems.append(problem(f"join key {key.name!r} is missing from the output schema ({output})"))
        elif found[1] is None or not compatible(key.type, found[1]):
            problems.append(
                problem(
                    f"join key {key.name!r} is {_show(found[1])} in the output but the entity declares {key.type!r}"
                )
            )
    found = by_name.get(view.timestamp_field.lower())
    if found is None:
        problems.append(
            problem(f"timestamp_field {view.timestamp_field!r} is missing from the output schema ({output})")
        )
    elif found[1] != Timestamp:
        problems.append(
            problem(f"timestamp_field {view.timestamp_field!r} is {_show(found[1])}, not a timestamp")
        )
    problems += _check_aggregate_inputs(view, by_name, output, problem)
    for feature in view.features:
        if feature.kind != "attribute":
            continue
        found = by_name.get((feature.column or feature.name).lower())
        if found is None:
            problems.append(problem(f"feature {feature.name!r} is missing from the output schema ({output})"))
        elif found[1] is None or not compatible(feature.type, found[1]):
            problems.append(
                problem(
                    f"feature type mismatch: {feature.name!r} is declared {feature.type!r} but the output is {_show(found[1])}"
                )
            )
    return view, problems
