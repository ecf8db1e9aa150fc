"""Feature views: named, typed features of entities, computed by a transformation over sources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from featureplane.definitions.base import (
    Definition,
    DefinitionError,
    caller_location,
    check_name,
    parse_duration,
    to_utc_naive,
)
from featureplane.definitions.entity import Entity
from featureplane.definitions.expectations import expectation_specs
from featureplane.definitions.features import Attribute
from featureplane.definitions.sources import DataSource, PushSource
from featureplane.definitions.specs import (
    FeatureSpec,
    FeatureViewSpec,
    FieldSpec,
    TransformationSpec,
    format_time,
)
from featureplane.definitions.transformation import (
    MaterializationContext,
    load_python_function,
    python_transformation,
    sql_transformation,
)

BATCH_MODES = ("snowflake_sql", "pandas", "snowpark")


def _retention(value: timedelta | str | None, where: str) -> timedelta | None:
    if value is None:
        return None
    retention = parse_duration(value, f"{where}: offline_retention")
    if retention <= timedelta(0):
        raise DefinitionError(f"{where}: offline_retention must be positive, got {retention}")
    return retention


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
    timestamp_field: str | None
    ttl: timedelta | None
    offline_retention: timedelta | None = None
    online: bool
    offline: bool
    owner: str
    description: str
    tags: dict[str, str]
    prevent_destroy: bool
    options: dict[str, Any]

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

    def _view_spec(self, **fields: Any) -> FeatureViewSpec:
        """The spec of what every kind of view declares, plus the kind's own ``fields``."""
        return FeatureViewSpec(
            name=self.name,
            kind=self.view_kind,
            entities=self.entity_names,
            join_keys=self.join_key_specs(),
            sources=self.source_names,
            features=self.feature_specs(),
            timestamp_field=self.timestamp_field or "",
            ttl_seconds=int(self.ttl.total_seconds()) if self.ttl is not None else None,
            offline_retention_seconds=(
                int(self.offline_retention.total_seconds()) if self.offline_retention is not None else None
            ),
            online=self.online,
            offline=self.offline,
            owner=self.owner,
            description=self.description,
            tags=dict(self.tags),
            prevent_destroy=self.prevent_destroy,
            options=dict(self.options),
            location=self.location,
            **fields,
        )


class FeatureViewReference(FeatureView):
    """A feature view declared outside Python (in a dbt model's YAML), named so that a FeatureService can
    list it. Its features are looked up when the repository compiles."""

    def __init__(self, name: str) -> None:
        self.location = caller_location()
        self.name = check_name("feature view", name, self.location)
        self.entities = []
        self.sources = []
        self.features = []

    def feature_specs(self) -> list[FeatureSpec]:
        return []

    def spec(self) -> FeatureViewSpec:
        raise DefinitionError(
            f"{self.location}: {self.name!r} only refers to a feature view declared elsewhere"
        )


def dbt_feature_view(name: str) -> FeatureViewReference:
    """A feature view declared in a dbt model's YAML, for a FeatureService:
    ``dbt_feature_view("user_spend_7d")`` (all its features) or ``dbt_feature_view("user_spend_7d")[["spend_7d"]]``.
    """
    return FeatureViewReference(name)


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
        monitor_freshness: bool = True,
        expected_feature_freshness: timedelta | str | None = None,
        offline_retention: timedelta | str | None = None,
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
        self.offline_retention = _retention(offline_retention, where)
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
        self.monitor_freshness = bool(monitor_freshness)
        self.expected_feature_freshness = (
            parse_duration(expected_feature_freshness, f"{where}: expected_feature_freshness")
            if expected_feature_freshness is not None
            else None
        )
        self._transformation = self._build_transformation(where)

    def _build_transformation(self, where: str) -> TransformationSpec:
        if self.mode == "snowflake_sql":
            return sql_transformation(self.function, self.source_names, where)
        return python_transformation(self.function, self.mode, self.source_names, where)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def spec(self) -> FeatureViewSpec:
        return self._view_spec(
            transformation=self._transformation,
            feature_start_time=format_time(self.feature_start_time) if self.feature_start_time else None,
            batch_schedule_seconds=int(self.batch_schedule.total_seconds()),
            aggregation_interval_seconds=(
                int(self.aggregation_interval.total_seconds()) if self.aggregation_interval else None
            ),
            partitions_per_run=self.partitions_per_run,
            expectations=expectation_specs(self.expectations, f"{self.location}: feature view {self.name!r}"),
            monitor_freshness=self.monitor_freshness,
            expected_freshness_seconds=(
                int(self.expected_feature_freshness.total_seconds())
                if self.expected_feature_freshness is not None
                else None
            ),
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
    monitor_freshness: bool = True,
    expected_feature_freshness: timedelta | str | None = None,
    offline_retention: timedelta | str | None = None,
) -> Callable[[Callable[..., Any]], BatchFeatureView]:
    """Declare a batch feature view, materialized every ``batch_schedule`` from ``feature_start_time``.

    ``mode="snowflake_sql"``: the function returns Snowflake SQL in which each source parameter stands
    for the source's rows in the materialization window (``FROM {transactions}``); locally it runs on
    DuckDB after transpiling with sqlglot. ``mode="pandas"``: the function receives one DataFrame per
    source and returns a DataFrame. A parameter named ``context`` receives the window
    (``context.start_time``, ``context.end_time``). The output has the entities' join keys, the
    ``timestamp_field`` and one column per declared feature; rows outside the window are dropped.

    ``expectations`` are data-quality checks run on every materialized partition before it is written
    (``featureplane.NotNull("spend")``, ``Between(...)``, ... or ``ExpectationSuiteFile(path)``); an
    ``error`` one that fails blocks the write. ``expected_feature_freshness`` (default: twice the
    ``batch_schedule``) is how old the newest materialized partition may get before the view's freshness
    check fails; ``monitor_freshness=False`` turns that check off. ``offline_retention`` (e.g. ``"365d"``)
    bounds the offline history: the maintenance job deletes rows (tiles) older than that.
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
            monitor_freshness=monitor_freshness,
            expected_feature_freshness=expected_feature_freshness,
            offline_retention=offline_retention,
        )

    return decorate


class FeatureTable(FeatureView):
    """Features computed elsewhere and written to featureplane: through the ingest API
    (``POST /api/v1/ingest``, records named by the table or by its ``source``) or from a notebook with
    ``get_workspace(...).get_feature_view(name).ingest(df)``.

    Each record carries the entities' join keys, ``timestamp_field`` and the features. The online store
    keeps the latest record per entity (an older event never replaces a newer one); the offline store
    keeps every record for training (or those younger than ``offline_retention``, when given). ``source``
    names a PushSource whose records also feed this table.
    """

    view_kind = "table"

    def __init__(
        self,
        *,
        name: str,
        entities: Sequence[Entity | str],
        features: Sequence[Attribute],
        timestamp_field: str,
        source: PushSource | str | None = None,
        online: bool = False,
        offline: bool = True,
        ttl: timedelta | str | None = None,
        owner: str = "",
        description: str = "",
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
        options: dict[str, Any] | None = None,
        offline_retention: timedelta | str | None = None,
    ) -> None:
        self._register()
        self.name = check_name("feature table", name, self.location)
        where = f"{self.location}: feature table {self.name!r}"
        if not entities:
            raise DefinitionError(f"{where}: needs at least one entity")
        if not features:
            raise DefinitionError(f"{where}: needs features=[Attribute(...), ...]")
        for feature in features:
            if not isinstance(feature, Attribute):
                raise DefinitionError(f"{where}: features must be Attribute(...), got {feature!r}")
        if not timestamp_field or not isinstance(timestamp_field, str):
            raise DefinitionError(f"{where}: needs a timestamp_field (the records' event time column)")
        if source is not None and not isinstance(source, PushSource | str):
            raise DefinitionError(f"{where}: source must be a PushSource, got {source!r}")
        self.entities = list(entities)
        self.sources = [source] if source is not None else []
        self.features = list(features)
        self.timestamp_field = timestamp_field
        self.online = bool(online)
        self.offline = bool(offline)
        self.ttl = parse_duration(ttl, f"{where}: ttl") if ttl is not None else None
        self.offline_retention = _retention(offline_retention, where)
        self.owner = owner
        self.description = description
        self.tags = dict(tags or {})
        self.prevent_destroy = bool(prevent_destroy)
        self.options = dict(options or {})

    def feature_specs(self) -> list[FeatureSpec]:
        return [feature.spec() for feature in self.features]

    def spec(self) -> FeatureViewSpec:
        return self._view_spec()
