"""Feature views: named, typed features of entities, computed by a transformation over sources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from featureplane.definitions.base import (
    Definition,
    DefinitionError,
    check_name,
    parse_duration,
    to_utc_naive,
)
from featureplane.definitions.entity import Entity
from featureplane.definitions.features import Attribute
from featureplane.definitions.sources import DataSource
from featureplane.definitions.transformation import (
    MaterializationContext,
    load_python_function,
    python_transformation,
    sql_transformation,
)
from featureplane.specs import FeatureSpec, FeatureViewSpec, FieldSpec, TransformationSpec, format_time

BATCH_MODES = ("snowflake_sql", "pandas", "snowpark")


class FeatureSelection:
    """Some features of a view, as selected for a feature service: ``view[["a", "b"]]``."""

    def __init__(self, view: FeatureView, features: list[str]) -> None:
        self.view = view
        self.features = features

    def __repr__(self) -> str:
        return f"{self.view.name}{self.features!r}"


class FeatureView(Definition):
    kind = "feature_view"
    view_kind = "batch"

    name: str
    entities: list[Entity | str]
    sources: list[DataSource | str]
    features: list[Any]

    def __getitem__(self, features: Sequence[str] | str) -> FeatureSelection:
        if isinstance(features, str):
            features = [features]
        return FeatureSelection(self, list(features))

    @property
    def entity_names(self) -> list[str]:
        return [e if isinstance(e, str) else e.name for e in self.entities]

    @property
    def source_names(self) -> list[str]:
        return [s if isinstance(s, str) else s.name for s in self.sources]

    def join_key_specs(self) -> list[FieldSpec]:
        keys: list[FieldSpec] = []
        for entity in self.entities:
            if isinstance(entity, Entity):
                for key in entity.join_keys:
                    if key.name not in [k.name for k in keys]:
                        keys.append(key.spec())
        return keys

    def feature_specs(self) -> list[FeatureSpec]:
        specs = []
        for feature in self.features:
            if not hasattr(feature, "spec"):
                raise DefinitionError(
                    f"{self.location}: feature view {self.name!r}: features must be Attribute(...) or Aggregate(...), got {feature!r}"
                )
            specs.append(feature.spec())
        return specs

    def spec(self) -> FeatureViewSpec:
        raise NotImplementedError


class BatchFeatureView(FeatureView):
    """A feature view materialized on a schedule from batch sources (see ``batch_feature_view``)."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None,
        sources: Sequence[DataSource | str],
        entities: Sequence[Entity | str],
        mode: str,
        features: Sequence[Attribute | Any],
        timestamp_field: str | None,
        feature_start_time: datetime | str | None,
        batch_schedule: timedelta | str,
        ttl: timedelta | str | None,
        aggregation_interval: timedelta | str | None,
        online: bool,
        offline: bool,
        owner: str,
        description: str,
        tags: dict[str, str] | None,
        prevent_destroy: bool,
        partitions_per_run: int | None,
        expectations: Sequence[Any] | None,
        options: dict[str, Any] | None,
        location: str,
    ) -> None:
        self.function = function
        self._register(location)
        self.name = check_name("feature view", name or function.__name__, self.location)
        where = f"{self.location}: feature view {self.name!r}"
        if mode not in BATCH_MODES:
            raise DefinitionError(f"{where}: mode must be one of {', '.join(BATCH_MODES)}; got {mode!r}")
        if not sources:
            raise DefinitionError(f"{where}: needs at least one source")
        if not entities:
            raise DefinitionError(f"{where}: needs at least one entity")
        if not features:
            raise DefinitionError(f"{where}: needs features=[Attribute(...), ...]")
        self.mode = mode
        self.sources = list(sources)
        self.entities = list(entities)
        self.features = list(features)
        self.timestamp_field = timestamp_field
        self.feature_start_time = (
            to_utc_naive(feature_start_time, f"{where}: feature_start_time")
            if feature_start_time is not None
            else None
        )
        self.batch_schedule = parse_duration(batch_schedule, f"{where}: batch_schedule")
        self.ttl = parse_duration(ttl, f"{where}: ttl") if ttl is not None else None
        self.aggregation_interval = (
            parse_duration(aggregation_interval, f"{where}: aggregation_interval")
            if aggregation_interval
            else None
        )
        self.online = bool(online)
        self.offline = bool(offline)
        self.owner = owner
        self.description = description or (function.__doc__ or "").strip()
        self.tags = dict(tags or {})
        self.prevent_destroy = bool(prevent_destroy)
        self.partitions_per_run = partitions_per_run
        self.expectations = list(expectations or [])
        self.options = dict(options or {})
        self._transformation = self._build_transformation(where)

    def _build_transformation(self, where: str) -> TransformationSpec:
        if self.mode == "snowflake_sql":
            return sql_transformation(self.function, self.source_names, where)
        return python_transformation(self.function, self.mode, self.source_names, where)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def spec(self) -> FeatureViewSpec:
        return FeatureViewSpec(
            name=self.name,
            kind=self.view_kind,
            entities=self.entity_names,
            join_keys=self.join_key_specs(),
            sources=self.source_names,
            features=self.feature_specs(),
            timestamp_field=self.timestamp_field or "",
            transformation=self._transformation,
            feature_start_time=format_time(self.feature_start_time) if self.feature_start_time else None,
            batch_schedule_seconds=int(self.batch_schedule.total_seconds()),
            ttl_seconds=int(self.ttl.total_seconds()) if self.ttl is not None else None,
            aggregation_interval_seconds=(
                int(self.aggregation_interval.total_seconds()) if self.aggregation_interval else None
            ),
            online=self.online,
            offline=self.offline,
            owner=self.owner,
            description=self.description,
            tags=dict(self.tags),
            prevent_destroy=self.prevent_destroy,
            partitions_per_run=self.partitions_per_run,
            expectations=[e.spec() if hasattr(e, "spec") else dict(e) for e in self.expectations],
            options=dict(self.options),
            location=self.location,
        )

    def run_function(self, *inputs: Any, start_time: datetime, end_time: datetime) -> Any:
        """Run the stored transformation (as materialization would) on the given inputs."""
        fn = load_python_function(self._transformation) if self.mode != "snowflake_sql" else self.function
        context = MaterializationContext(start_time, end_time)
        it = iter(inputs)
        return fn(*[context if p == "context" else next(it) for p in self._transformation.parameters])


def batch_feature_view(
    *,
    sources: Sequence[DataSource | str],
    entities: Sequence[Entity | str],
    mode: str,
    features: Sequence[Any],
    timestamp_field: str | None = None,
    feature_start_time: datetime | str | None = None,
    batch_schedule: timedelta | str = timedelta(days=1),
    ttl: timedelta | str | None = None,
    aggregation_interval: timedelta | str | None = None,
    online: bool = False,
    offline: bool = True,
    owner: str = "",
    description: str = "",
    tags: dict[str, str] | None = None,
    prevent_destroy: bool = False,
    partitions_per_run: int | None = None,
    expectations: Sequence[Any] | None = None,
    options: dict[str, Any] | None = None,
    name: str | None = None,
) -> Callable[[Callable[..., Any]], BatchFeatureView]:
    """Declare a batch feature view, materialized every ``batch_schedule`` from ``feature_start_time``.

    ``mode="snowflake_sql"``: the function returns Snowflake SQL in which each source parameter stands
    for the source's rows in the materialization window (``FROM {transactions}``); locally it runs on
    DuckDB after transpiling with sqlglot. ``mode="pandas"``: the function receives one DataFrame per
    source and returns a DataFrame. A parameter named ``context`` receives the window
    (``context.start_time``, ``context.end_time``). The output has the entities' join keys, the
    ``timestamp_field`` and one column per declared feature; rows outside the window are dropped.
    """
    from featureplane.definitions.base import caller_location

    location = caller_location()

    def decorate(function: Callable[..., Any]) -> BatchFeatureView:
        return BatchFeatureView(
            function,
            name=name,
            sources=sources,
            entities=entities,
            mode=mode,
            features=features,
            timestamp_field=timestamp_field,
            feature_start_time=feature_start_time,
            batch_schedule=batch_schedule,
            ttl=ttl,
            aggregation_interval=aggregation_interval,
            online=online,
            offline=offline,
            owner=owner,
            description=description,
            tags=tags,
            prevent_destroy=prevent_destroy,
            partitions_per_run=partitions_per_run,
            expectations=expectations,
            options=options,
            location=location,
        )

    return decorate
