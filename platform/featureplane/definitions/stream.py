"""Stream sources and stream feature views: features updated by the stream processor per record.

A ``StreamSource`` is either the ingest API used as a push stream (``push_schema=[Field(...)]``: records
pushed to ``POST /api/v1/ingest`` under the source's name) or a Kinesis stream (``kinesis=
KinesisConfig(...)``); its ``batch_config`` is the batch source that holds the same events historically.

A ``@stream_feature_view`` applies its optional transformation to each record (``mode="python"``: the
function takes one record as a dict and returns a dict, or None to drop it; ``mode="pandas"``: it
takes a batch's records as a DataFrame and returns a DataFrame of the rows to use) and either aggregates the result
into tiles of ``aggregation_interval`` (``features=[Aggregate(...)]``) or keeps the latest row per key
(``features=[Attribute(...)]``). ``docs/streams.md`` describes the semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from featureplane.definitions.base import (
    DefinitionError,
    caller_location,
    check_name,
    parse_duration,
    to_utc_naive,
)
from featureplane.definitions.entity import Entity, Field
from featureplane.definitions.feature_view import FeatureView
from featureplane.definitions.sources import DataSource
from featureplane.definitions.specs import FeatureViewSpec, TransformationSpec, format_time
from featureplane.definitions.transformation import function_source, load_python_function
from featureplane.types import Timestamp

STREAM_MODES = ("python", "pandas")
PROCESSING_MODES = ("continuous", "time_interval")
INITIAL_POSITIONS = ("TRIM_HORIZON", "LATEST")
DEFAULT_ALLOWED_LATENESS = timedelta(minutes=5)


@dataclass(frozen=True)
class KinesisConfig:
    """Where a StreamSource reads from Kinesis: ``stream_name`` in ``region``; ``endpoint_url`` for a
    Kinesis-compatible server; ``initial_position`` (``TRIM_HORIZON`` or ``LATEST``) is where a shard
    without a checkpoint starts."""

    stream_name: str
    region: str
    endpoint_url: str | None = None
    initial_position: str = "TRIM_HORIZON"

    def spec(self, where: str) -> dict[str, Any]:
        if not isinstance(self.stream_name, str) or not self.stream_name:
            raise DefinitionError(f"{where}: KinesisConfig needs a stream_name")
        if not isinstance(self.region, str) or not self.region:
            raise DefinitionError(f"{where}: KinesisConfig needs a region, e.g. 'us-east-1'")
        if self.initial_position not in INITIAL_POSITIONS:
            raise DefinitionError(
                f"{where}: KinesisConfig initial_position must be one of {', '.join(INITIAL_POSITIONS)}; "
                f"got {self.initial_position!r}"
            )
        out: dict[str, Any] = {
            "type": "kinesis",
            "stream_name": self.stream_name,
            "region": self.region,
            "initial_position": self.initial_position,
        }
        if self.endpoint_url:
            out["endpoint_url"] = self.endpoint_url
        return out


class StreamSource(DataSource):
    """Records arriving one by one: pushed through the ingest API (``push_schema``) or read from
    Kinesis (``kinesis``, with an optional ``schema`` of the records' fields).

    ``timestamp_field`` is the records' event time; ``batch_config`` is a batch source (a BatchSource
    or a DbtModel, or its name) holding the same events historically, which backfills the views."""

    source_kind = "stream"

    def __init__(
        self,
        *,
        name: str,
        timestamp_field: str,
        batch_config: DataSource | str,
        push_schema: list[Field] | None = None,
        kinesis: KinesisConfig | None = None,
        schema: list[Field] | None = None,
        description: str = "",
        owner: str = "",
        tags: dict[str, str] | None = None,
    ) -> None:
        if push_schema is not None and schema is not None:
            schema = [*push_schema, *schema]
        super().__init__(
            name=name,
            timestamp_field=timestamp_field,
            schema=push_schema if schema is None else schema,
            description=description,
            owner=owner,
            tags=tags,
        )
        where = f"{self.location}: StreamSource {name!r}"
        if (push_schema is None) == (kinesis is None):
            raise DefinitionError(
                f"{where} needs exactly one of push_schema=[Field(...)] or kinesis=KinesisConfig(...)"
            )
        if kinesis is not None and not isinstance(kinesis, KinesisConfig):
            raise DefinitionError(f"{where}: kinesis must be a KinesisConfig(...), got {kinesis!r}")
        if not isinstance(timestamp_field, str) or not timestamp_field:
            raise DefinitionError(f"{where} needs a timestamp_field (the records' event time)")
        if isinstance(batch_config, DataSource):
            if batch_config.source_kind != "batch":
                raise DefinitionError(
                    f"{where}: batch_config must be a batch source (BatchSource or DbtModel), "
                    f"got {type(batch_config).__name__} {batch_config.name!r}"
                )
        elif not isinstance(batch_config, str) or not batch_config:
            raise DefinitionError(
                f"{where}: batch_config must be a batch source (BatchSource or DbtModel) or its name, "
                f"got {batch_config!r}"
            )
        names = [f.name for f in self.schema]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DefinitionError(f"{where}: field(s) declared twice: {', '.join(duplicates)}")
        if push_schema is not None:
            if not self.schema:
                raise DefinitionError(f"{where}: push_schema needs at least one Field")
            types = {f.name: f.dtype for f in self.schema}
            if timestamp_field not in types:
                raise DefinitionError(
                    f"{where}: timestamp_field {timestamp_field!r} must be one of the push_schema's fields "
                    f"({', '.join(names)})"
                )
            if types[timestamp_field] != Timestamp:
                raise DefinitionError(
                    f"{where}: timestamp_field {timestamp_field!r} is {types[timestamp_field]!r}, not Timestamp"
                )
        self.batch_config = batch_config
        self.stream = {"type": "push"} if kinesis is None else kinesis.spec(where)

    @property
    def batch_source_name(self) -> str:
        return self.batch_config if isinstance(self.batch_config, str) else self.batch_config.name

    def _spec_fields(self) -> dict:
        return {"batch_source": self.batch_source_name, "stream": dict(self.stream)}


class StreamFeatureView(FeatureView):
    """A feature view updated from a StreamSource by the stream processor (see ``stream_feature_view``).

    Constructed directly (without a function) it applies no transformation: each record is used as
    it arrives."""

    view_kind = "stream"

    def __init__(
        self,
        *,
        name: str | None = None,
        source: StreamSource | str,
        entities: Sequence[Entity | str],
        features: Sequence[Any],
        function: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        mode: str = "python",
        aggregation_interval: timedelta | str | None = None,
        stream_processing_mode: str = "continuous",
        timestamp_field: str | None = None,
        online: bool = False,
        offline: bool = False,
        feature_start_time: datetime | str | None = None,
        batch_schedule: timedelta | str = timedelta(days=1),
        ttl: timedelta | str | None = None,
        allowed_lateness: timedelta | str = DEFAULT_ALLOWED_LATENESS,
        owner: str = "",
        description: str = "",
        tags: dict[str, str] | None = None,
        prevent_destroy: bool = False,
        options: dict[str, Any] | None = None,
        location: str | None = None,
    ) -> None:
        self.function = function
        self._register(location)
        if name is None and function is None:
            raise DefinitionError(f"{self.location}: a StreamFeatureView needs a name")
        self.name = check_name("feature view", name or function.__name__, self.location)  # type: ignore[union-attr]
        where = f"{self.location}: feature view {self.name!r}"
        if mode not in STREAM_MODES:
            raise DefinitionError(f"{where}: mode must be one of {', '.join(STREAM_MODES)}; got {mode!r}")
        if stream_processing_mode not in PROCESSING_MODES:
            raise DefinitionError(
                f"{where}: stream_processing_mode must be one of {', '.join(PROCESSING_MODES)}; "
                f"got {stream_processing_mode!r}"
            )
        if isinstance(source, DataSource) and not isinstance(source, StreamSource):
            raise DefinitionError(
                f"{where}: source must be a StreamSource, got {type(source).__name__} {source.name!r}"
            )
        if not isinstance(source, StreamSource | str):
            raise DefinitionError(f"{where}: source must be a StreamSource, got {source!r}")
        if not entities:
            raise DefinitionError(f"{where}: needs at least one entity")
        if not features:
            raise DefinitionError(f"{where}: needs features=[Aggregate(...), ...] or [Attribute(...), ...]")
        self.mode = mode
        self.sources = [source]
        self.entities = list(entities)
        self.features = list(features)
        if timestamp_field is None and isinstance(source, StreamSource):
            timestamp_field = source.timestamp_field
        if not timestamp_field:
            raise DefinitionError(f"{where}: needs a timestamp_field when its source is given by name")
        self.timestamp_field = timestamp_field
        self.stream_processing_mode = stream_processing_mode
        self.aggregation_interval = (
            parse_duration(aggregation_interval, f"{where}: aggregation_interval")
            if aggregation_interval
            else None
        )
        self.feature_start_time = (
            to_utc_naive(feature_start_time, f"{where}: feature_start_time")
            if feature_start_time is not None
            else None
        )
        self.batch_schedule = parse_duration(batch_schedule, f"{where}: batch_schedule")
        self.ttl = parse_duration(ttl, f"{where}: ttl") if ttl is not None else None
        self.allowed_lateness = parse_duration(allowed_lateness, f"{where}: allowed_lateness")
        if self.allowed_lateness < timedelta(0):
            raise DefinitionError(
                f"{where}: allowed_lateness must not be negative, got {self.allowed_lateness}"
            )
        self.online = bool(online)
        self.offline = bool(offline)
        self.owner = owner
        self.description = description or ((function.__doc__ or "").strip() if function else "")
        self.tags = dict(tags or {})
        self.prevent_destroy = bool(prevent_destroy)
        self.options = dict(options or {})
        self._transformation = self._build_transformation(where)

    def _build_transformation(self, where: str) -> TransformationSpec | None:
        if self.function is None:
            return None
        return TransformationSpec(
            mode=self.mode,
            function_name=self.function.__name__,
            parameters=self.source_names,
            python=function_source(self.function, where, self.mode),
        )

    def __call__(self, records: Any) -> Any:
        """The transformation, as the stream processor runs it (from its stored source): of one
        record's dict (``mode="python"``), or of a batch's DataFrame (``mode="pandas"``)."""
        if self._transformation is None:
            return records.copy()
        return load_python_function(self._transformation)(records.copy())

    def spec(self) -> FeatureViewSpec:
        return self._view_spec(
            transformation=self._transformation,
            feature_start_time=format_time(self.feature_start_time) if self.feature_start_time else None,
            batch_schedule_seconds=int(self.batch_schedule.total_seconds()),
            aggregation_interval_seconds=(
                int(self.aggregation_interval.total_seconds()) if self.aggregation_interval else None
            ),
            stream_processing_mode=self.stream_processing_mode,
            allowed_lateness_seconds=int(self.allowed_lateness.total_seconds()),
        )


def stream_feature_view(
    *,
    source: StreamSource | str,
    entities: Sequence[Entity | str],
    features: Sequence[Any],
    mode: str = "python",
    aggregation_interval: timedelta | str | None = None,
    stream_processing_mode: str = "continuous",
    timestamp_field: str | None = None,
    online: bool = False,
    offline: bool = False,
    feature_start_time: datetime | str | None = None,
    batch_schedule: timedelta | str = timedelta(days=1),
    ttl: timedelta | str | None = None,
    allowed_lateness: timedelta | str = DEFAULT_ALLOWED_LATENESS,
    owner: str = "",
    description: str = "",
    tags: dict[str, str] | None = None,
    prevent_destroy: bool = False,
    options: dict[str, Any] | None = None,
    name: str | None = None,
) -> Callable[[Callable[[dict[str, Any]], dict[str, Any] | None]], StreamFeatureView]:
    """Declare a stream feature view whose function transforms the records of ``source``.

    With ``mode="python"`` the function takes one record (a dict of the source's fields, the timestamp
    as a naive UTC datetime) and returns the row to use (a dict with the join keys, the timestamp field
    and the aggregated or stored columns) or None to drop the record. With ``mode="pandas"`` it takes
    a batch's records as a DataFrame (``pd`` is provided) and returns a DataFrame of the rows to use,
    each under its input row's index label (a row left out is dropped). It runs on its own, so it
    imports what it uses inside its body. ``stream_processing_mode="continuous"`` counts each processed event at once:
    a window ending at ``t`` covers the interval holding ``t`` and the ones before it;
    ``"time_interval"`` counts an interval's events once it has ended, as batch views do. Events older
    than the latest event seen minus ``allowed_lateness`` are counted and reported, not applied.
    """
    location = caller_location()

    def decorate(function: Callable[[dict[str, Any]], dict[str, Any] | None]) -> StreamFeatureView:
        return StreamFeatureView(
            name=name,
            source=source,
            entities=entities,
            features=features,
            function=function,
            mode=mode,
            aggregation_interval=aggregation_interval,
            stream_processing_mode=stream_processing_mode,
            timestamp_field=timestamp_field,
            online=online,
            offline=offline,
            feature_start_time=feature_start_time,
            batch_schedule=batch_schedule,
            ttl=ttl,
            allowed_lateness=allowed_lateness,
            owner=owner,
            description=description,
            tags=tags,
            prevent_destroy=prevent_destroy,
            options=options,
            location=location,
        )

    return decorate
