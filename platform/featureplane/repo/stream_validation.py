"""Checks of stream sources and stream feature views, reported like every other problem (object and
file:line)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from featureplane.definitions.specs import DefinitionSet, FeatureViewSpec, SourceSpec
from featureplane.repo.errors import Problem
from featureplane.types import Timestamp, compatible

# What the stream processor can keep up to date per event (compute/aggregation/tiles.py's partials).
STREAM_FUNCTIONS = (
    "count",
    "count_distinct",
    "sum",
    "mean",
    "min",
    "max",
    "stddev_samp",
    "stddev_pop",
    "first",
    "last",
    "last_n",
)


def stream_source_problems(source: SourceSpec, defs: DefinitionSet) -> list[Problem]:
    """A stream source's ``batch_config`` is a batch source of the repository."""
    if source.kind != "stream":
        return []
    clash = defs.feature_views.get(source.name)
    if clash is not None and clash.kind == "table" and source.stream.get("type") == "push":
        return [
            Problem(
                "data source",
                source.name,
                source.location,
                f"a FeatureTable is also named {source.name!r}: ingest records could not tell them apart",
            )
        ]
    name = source.batch_source
    batch = defs.sources.get(name or "")
    if batch is None:
        message = f"batch_config {name!r} is not a data source of the repository"
    elif batch.kind != "batch":
        message = f"batch_config {name!r} is a {batch.kind} source; it must be a batch source (BatchSource or DbtModel)"
    else:
        return []
    return [Problem("data source", source.name, source.location, message)]


def stream_view_problems(
    view: FeatureViewSpec, defs: DefinitionSet, problem: Callable[[str], Problem]
) -> list[Problem]:
    problems = []
    for name in view.sources:
        source = defs.sources.get(name)
        if source is not None and source.kind != "stream":
            problems.append(
                problem(
                    f"source {name!r} is a {source.kind} source; a stream feature view reads a StreamSource"
                )
            )
    if len(view.sources) != 1:
        problems.append(
            problem(f"a stream feature view reads exactly one StreamSource, got {len(view.sources)}")
        )
    aggregates = [f for f in view.features if f.kind == "aggregate"]
    if aggregates:
        if view.ttl_seconds is not None:
            problems.append(
                problem("ttl does not apply to Aggregate features: their time windows decide what counts")
            )
        interval = view.aggregation_interval_seconds
        if not interval or interval <= 0:
            problems.append(
                problem(
                    "Aggregate features need an aggregation_interval (the size of a tile), "
                    "e.g. aggregation_interval=timedelta(minutes=1)"
                )
            )
            return problems
        if len(aggregates) != len(view.features):
            attributes = ", ".join(f.name for f in view.features if f.kind != "aggregate")
            problems.append(
                problem(
                    f"mixes Attribute features ({attributes}) with Aggregate features; put them in separate views"
                )
            )
        schedule = view.batch_schedule_seconds or 0
        if schedule % interval:
            problems.append(
                problem(
                    f"aggregation_interval {timedelta(seconds=interval)} does not divide batch_schedule "
                    f"{timedelta(seconds=schedule)}: each backfill partition must hold whole intervals"
                )
            )
        for feature in aggregates:
            if feature.function not in STREAM_FUNCTIONS:
                problems.append(
                    problem(f"feature {feature.name!r}: {feature.function} is not supported on streams")
                )
            if feature.window_seconds is None:
                problems.append(
                    problem(
                        f"feature {feature.name!r}: lifetime windows are not supported on stream feature views "
                        "yet; give a time_window"
                    )
                )
            elif feature.window_seconds % interval:
                problems.append(
                    problem(
                        f"feature {feature.name!r}: time_window {timedelta(seconds=feature.window_seconds)} is not "
                        f"a multiple of aggregation_interval {timedelta(seconds=interval)}"
                    )
                )
    elif view.aggregation_interval_seconds:
        problems.append(problem("aggregation_interval is set but no feature is an Aggregate(...)"))
    if view.transformation is None:
        problems += _schema_problems(view, defs, problem)
    return problems


def _schema_problems(
    view: FeatureViewSpec, defs: DefinitionSet, problem: Callable[[str], Problem]
) -> list[Problem]:
    """Without a transformation, the records are the rows: the source's schema (where it declares one)
    must have the join keys, the timestamp and every column the features read, in their types."""
    source = defs.sources.get(view.sources[0]) if view.sources else None
    if source is None or source.kind != "stream" or not source.schema:
        return []
    columns = {f.name: f.type for f in source.schema}
    wanted = [(k.name, k.type, "join key") for k in view.join_keys]
    wanted.append((view.timestamp_field, Timestamp, "timestamp_field"))
    for feature in view.features:
        column = feature.column or feature.name
        if feature.kind == "attribute":
            wanted.append((column, feature.type, f"feature {feature.name!r}"))
        elif feature.function == "count":
            wanted.append((column, None, f"feature {feature.name!r}"))
        else:
            from featureplane.compute.aggregation.tiles import input_type

            wanted.append((column, input_type(feature), f"feature {feature.name!r}"))
    problems = []
    for column, dtype, what in wanted:
        if column not in columns:
            problems.append(
                problem(
                    f"{what}: stream source {source.name!r} has no field {column!r} (it has {', '.join(columns)})"
                )
            )
        elif dtype is not None and not compatible(dtype, columns[column]):
            problems.append(
                problem(
                    f"{what}: field {column!r} is {columns[column]!r} in stream source {source.name!r} but {dtype!r} here"
                )
            )
    return problems
