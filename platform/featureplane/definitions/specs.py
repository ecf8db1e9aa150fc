"""Specs: the plain, JSON-serialisable form of every definition.

The SDK objects of a feature repository compile to these specs; the registry stores them; the planner,
engines, materialization, Dagster code location, retrieval and the lookup service read only specs. This
module uses the standard library alone because the lookup service loads it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from featureplane.types import DataType, parse_type

ENTITY = "entity"
SOURCE = "data_source"
FEATURE_VIEW = "feature_view"
FEATURE_SERVICE = "feature_service"
KINDS = (ENTITY, SOURCE, FEATURE_VIEW, FEATURE_SERVICE)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    dtype: str

    @property
    def type(self) -> DataType:
        return parse_type(self.dtype)


@dataclass(frozen=True)
class FeatureSpec:
    """One output feature: a row-level ``attribute`` or a windowed ``aggregate``."""

    name: str
    dtype: str
    kind: str = "attribute"
    column: str | None = None
    function: str | None = None
    window_seconds: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> DataType:
        return parse_type(self.dtype)


@dataclass(frozen=True)
class TransformationSpec:
    """How a feature view computes its rows.

    ``snowflake_sql``: ``sql`` is Snowflake SQL in which each source appears as the identifier
    ``source_placeholder(name)`` and the window bounds as ``START_PLACEHOLDER``/``END_PLACEHOLDER``.
    ``pandas``/``snowpark``/``python``: ``python`` is the function's source without decorators, run by
    name ``function_name``; ``parameters`` maps each positional parameter to a source name or ``context``.
    A view declared in dbt reads its model's table (``sql``); ``dbt_sql`` keeps the model's own SQL so
    that editing it recreates the view and plans show the diff.
    """

    mode: str
    function_name: str
    parameters: list[str]
    sql: str | None = None
    python: str | None = None
    dbt_sql: str | None = None


@dataclass(frozen=True)
class EntitySpec:
    name: str
    join_keys: list[FieldSpec]
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: str = ""


@dataclass(frozen=True)
class SourceSpec:
    """A data source. ``kind`` is ``batch`` (table, Parquet or dbt model), ``push``, ``request`` or
    ``stream``. A stream source's ``stream`` says where its records come from (``{"type": "push"}``: the
    ingest API; ``{"type": "kinesis", "stream_name": ..., "region": ...}``) and ``batch_source`` names the
    batch source holding the same events historically.

    ``dbt_sql_hash`` (dbt models) hashes the model's SQL and everything upstream of it in dbt, so a
    changed model recreates the views that read it."""

    name: str
    kind: str
    timestamp_field: str | None = None
    table: str | None = None
    path: str | None = None
    dbt_model: str | None = None
    dbt_sql_hash: str | None = None
    batch_source: str | None = None
    stream: dict[str, Any] = field(default_factory=dict)
    schema: list[FieldSpec] = field(default_factory=list)
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: str = ""

    @property
    def asset_key(self) -> list[str]:
        """The Dagster asset key of the data this source reads."""
        if self.dbt_model:
            return [self.dbt_model]
        if self.table:
            return self.table.split(".")
        return ["source", self.name]


@dataclass(frozen=True)
class FeatureViewSpec:
    """A feature view: ``batch`` (materialized from batch sources), ``realtime`` (computed per request),
    ``table`` (a FeatureTable written through ingest) or ``stream`` (updated per record by the stream
    processor; ``stream_processing_mode`` is ``continuous`` or ``time_interval`` and events older than
    the latest seen minus ``allowed_lateness_seconds`` are not applied). A realtime view's ``sources`` are the feature
    views it reads and ``request_schema`` the request-time fields it needs."""

    name: str
    kind: str
    entities: list[str]
    join_keys: list[FieldSpec]
    sources: list[str]
    features: list[FeatureSpec]
    timestamp_field: str = "ts"
    transformation: TransformationSpec | None = None
    feature_start_time: str | None = None
    batch_schedule_seconds: int | None = None
    ttl_seconds: int | None = None
    aggregation_interval_seconds: int | None = None
    online: bool = False
    offline: bool = True
    owner: str = ""
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    prevent_destroy: bool = False
    partitions_per_run: int | None = None
    expectations: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    request_schema: list[FieldSpec] = field(default_factory=list)
    location: str = ""
    monitor_freshness: bool = True
    expected_freshness_seconds: int | None = None
    offline_retention_seconds: int | None = None
    stream_processing_mode: str | None = None
    allowed_lateness_seconds: int | None = None

    @property
    def is_batch(self) -> bool:
        return self.kind == "batch"

    @property
    def is_realtime(self) -> bool:
        return self.kind == "realtime"

    @property
    def is_stream(self) -> bool:
        return self.kind == "stream"

    @property
    def is_aggregate(self) -> bool:
        return any(f.kind == "aggregate" for f in self.features)

    @property
    def join_key_names(self) -> list[str]:
        return [k.name for k in self.join_keys]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"feature view {self.name!r} has no feature {name!r}")

    @property
    def start(self) -> datetime | None:
        return parse_time(self.feature_start_time) if self.feature_start_time else None

    @property
    def schedule(self) -> timedelta | None:
        return timedelta(seconds=self.batch_schedule_seconds) if self.batch_schedule_seconds else None

    @property
    def ttl(self) -> timedelta | None:
        return timedelta(seconds=self.ttl_seconds) if self.ttl_seconds else None

    @property
    def offline_retention(self) -> timedelta | None:
        """How long the offline store keeps the view's history (None: forever)."""
        return timedelta(seconds=self.offline_retention_seconds) if self.offline_retention_seconds else None


@dataclass(frozen=True)
class ServiceFeatures:
    """The features a service reads from one view, in order."""

    view: str
    features: list[str]


@dataclass(frozen=True)
class FeatureServiceSpec:
    name: str
    features: list[ServiceFeatures]
    online_serving_enabled: bool = True
    owner: str = ""
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    prevent_destroy: bool = False
    location: str = ""


Spec = EntitySpec | SourceSpec | FeatureViewSpec | FeatureServiceSpec

KIND_OF = {
    EntitySpec: ENTITY,
    SourceSpec: SOURCE,
    FeatureViewSpec: FEATURE_VIEW,
    FeatureServiceSpec: FEATURE_SERVICE,
}
CLASS_OF = {v: k for k, v in KIND_OF.items()}

# Fields that describe where a definition lives, not what it is: they never make a plan change.
NON_SEMANTIC_FIELDS = frozenset({"location"})


def kind_of(spec: Spec) -> str:
    return KIND_OF[type(spec)]


def to_dict(spec: Spec) -> dict[str, Any]:
    return asdict(spec)


def from_dict(kind: str, data: dict[str, Any]) -> Spec:
    cls = CLASS_OF[kind]
    return _build(cls, data)


def _build(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            continue  # written by a newer version; ignored rather than failing old readers
        kwargs[key] = _convert(cls, key, value)
    return cls(**kwargs)


def _convert(cls: type, key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in ("join_keys", "schema", "request_schema"):
        return [FieldSpec(**v) for v in value]
    if key == "features" and cls is FeatureViewSpec:
        return [_build(FeatureSpec, v) for v in value]
    if key == "features" and cls is FeatureServiceSpec:
        return [ServiceFeatures(**v) for v in value]
    if key == "transformation":
        return _build(TransformationSpec, value)
    return value


def to_json(spec: Spec) -> str:
    return json.dumps(to_dict(spec), sort_keys=True, separators=(",", ":"), default=str)


def semantic_dict(spec: Spec) -> dict[str, Any]:
    return {k: v for k, v in to_dict(spec).items() if k not in NON_SEMANTIC_FIELDS}


def spec_hash(spec: Spec) -> str:
    text = json.dumps(semantic_dict(spec), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 timestamp into a naive UTC datetime (featureplane's internal convention)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def format_time(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat()


@dataclass
class DefinitionSet:
    """All definitions of a repository or a workspace, by kind and name."""

    entities: dict[str, EntitySpec] = field(default_factory=dict)
    sources: dict[str, SourceSpec] = field(default_factory=dict)
    feature_views: dict[str, FeatureViewSpec] = field(default_factory=dict)
    feature_services: dict[str, FeatureServiceSpec] = field(default_factory=dict)

    def by_kind(self, kind: str) -> dict[str, Any]:
        return {
            ENTITY: self.entities,
            SOURCE: self.sources,
            FEATURE_VIEW: self.feature_views,
            FEATURE_SERVICE: self.feature_services,
        }[kind]

    def add(self, spec: Spec) -> None:
        self.by_kind(kind_of(spec))[spec.name] = spec

    def all(self) -> list[Spec]:
        return [
            *self.entities.values(),
            *self.sources.values(),
            *self.feature_views.values(),
            *self.feature_services.values(),
        ]
