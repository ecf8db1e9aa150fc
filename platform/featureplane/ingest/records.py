"""Where records can be pushed in a workspace, and checking records against their schema.

A record's values are normalised to the online store's representation (the one materialization
writes): int64 as int, float64 as float, timestamps as ISO-8601 text in UTC with a ``Z``, arrays as
lists; the event time becomes microseconds since the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from featureplane.errors import MAX_KEY_BYTES, MAX_RECORD_BYTES, describe_value
from featureplane.registry.base import WorkspaceState
from featureplane.types import DataType, Timestamp

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


class RecordError(ValueError):
    """A record that does not match its schema; the message names the record and the field."""


@dataclass(frozen=True)
class IngestTarget:
    """One FeatureTable written by an ingest endpoint."""

    view: str
    table_id: str
    join_keys: tuple[str, ...]
    timestamp_field: str
    features: tuple[str, ...]
    online: bool
    offline: bool
    ttl_seconds: int | None = None


@dataclass(frozen=True)
class IngestEndpoint:
    """A name records can be sent to: a PushSource (feeding every FeatureTable that reads it) or a
    FeatureTable itself. ``schema`` is every field a record may carry, ``required`` those it must."""

    name: str
    kind: str
    schema: dict[str, DataType]
    required: tuple[str, ...]
    targets: tuple[IngestTarget, ...]


def stream_table_id(workspace: str, source: str) -> str:
    """The ingest log's name for the records pushed to a stream source (its rows are
    ``[event_us, value...]`` in the source's schema order); stream processors read them from the log."""
    return f"{workspace}/{source}/stream"


def ingest_endpoints(state: WorkspaceState) -> dict[str, IngestEndpoint]:
    """The push sources, push stream sources and feature tables of a workspace, by name."""
    tables = [v for v in state.definitions.feature_views.values() if v.kind == "table"]
    endpoints: dict[str, IngestEndpoint] = {}

    def target(view: Any) -> IngestTarget:
        return IngestTarget(
            view=view.name,
            table_id=state.table_id(view.name),
            join_keys=tuple(view.join_key_names),
            timestamp_field=view.timestamp_field,
            features=tuple(view.feature_names),
            online=view.online,
            offline=view.offline,
            ttl_seconds=view.ttl_seconds,
        )

    for source in state.definitions.sources.values():
        if source.kind != "push":
            continue
        readers = [v for v in tables if source.name in v.sources]
        required = {source.timestamp_field or ""} | {k for v in readers for k in v.join_key_names}
        required |= {v.timestamp_field for v in readers}
        endpoints[source.name] = IngestEndpoint(
            name=source.name,
            kind="push_source",
            schema={f.name: f.type for f in source.schema},
            required=tuple(f.name for f in source.schema if f.name in required),
            targets=tuple(target(v) for v in readers),
        )
    for source in state.definitions.sources.values():
        if source.kind != "stream" or source.stream.get("type") != "push":
            continue
        readers = [
            v
            for v in state.definitions.feature_views.values()
            if v.kind == "stream" and source.name in v.sources
        ]
        # A view without a transformation reads its join keys from the records as they are.
        required = {source.timestamp_field or ""} | {
            k for v in readers if v.transformation is None for k in v.join_key_names
        }
        endpoints[source.name] = IngestEndpoint(
            name=source.name,
            kind="stream_source",
            schema={f.name: f.type for f in source.schema},
            required=tuple(f.name for f in source.schema if f.name in required),
            targets=(
                IngestTarget(
                    view=source.name,
                    table_id=stream_table_id(state.name, source.name),
                    join_keys=(),
                    timestamp_field=source.timestamp_field or "",
                    features=tuple(f.name for f in source.schema),
                    online=False,
                    offline=True,
                ),
            ),
        )
    for view in tables:
        schema = {k.name: k.type for k in view.join_keys}
        schema[view.timestamp_field] = Timestamp
        schema.update({f.name: f.type for f in view.features})
        endpoints[view.name] = IngestEndpoint(
            name=view.name,
            kind="feature_table",
            schema=schema,
            required=(*view.join_key_names, view.timestamp_field),
            targets=(target(view),),
        )
    return endpoints


def parse_records(
    endpoint: IngestEndpoint, items: Any, where: str, measure: bool = True
) -> list[dict[str, Any]]:
    """Check every record against the endpoint's schema; return them normalised, or raise RecordError
    naming the first bad record (``where[index]``) and field. A join key's value may be at most
    MAX_KEY_BYTES long and, with ``measure`` (needless when the whole request is smaller), a record at
    most MAX_RECORD_BYTES as JSON."""
    if not isinstance(items, list):
        raise RecordError(f'{where} must be a list of {{"record": {{...}}}} objects')
    converters = {name: converter(dtype) for name, dtype in endpoint.schema.items()}
    keys = {k for target in endpoint.targets for k in target.join_keys}
    parsed = []
    for index, item in enumerate(items):
        at = f"{where}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("record"), dict):
            raise RecordError(f'{at} must be an object of the form {{"record": {{...}}}}')
        record = item["record"]
        unknown = [k for k in record if k not in endpoint.schema]
        if unknown:
            raise RecordError(
                f"{at}: unknown field {describe_value(unknown[0], 40)}; {endpoint.name!r} has fields "
                f"{', '.join(f'{n} ({t})' for n, t in endpoint.schema.items())}"
            )
        out = {}
        for name, convert in converters.items():
            value = record.get(name)
            if value is None:
                if name in endpoint.required:
                    raise RecordError(f"{at}: field {name!r} is required ({endpoint.schema[name]})")
                out[name] = None
                continue
            try:
                out[name] = convert(value)
            except RecordError as exc:
                raise RecordError(f"{at}: field {name!r}: {exc}") from None
            if name in keys and isinstance(value, str) and len(value) > MAX_KEY_BYTES // 4:
                size = len(value.encode("utf-8", "surrogatepass"))
                if size > MAX_KEY_BYTES:
                    raise RecordError(
                        f"{at}: join key {name!r} is {size} bytes long; the limit is {MAX_KEY_BYTES} bytes (UTF-8)"
                    )
        if measure:
            size = len(orjson.dumps(out))
            if size > MAX_RECORD_BYTES:
                raise RecordError(
                    f"{at}: the record is {size} bytes as JSON; the limit is {MAX_RECORD_BYTES} bytes"
                )
        parsed.append(out)
    return parsed


def timestamp_us(value: Any) -> int:
    """Microseconds since the epoch of a normalised timestamp (``2024-01-01T00:00:00Z``)."""
    return (datetime.fromisoformat(value[:-1]) - _EPOCH) // _MICROSECOND


def converter(dtype: DataType) -> Callable[[Any], Any]:
    if dtype.is_array:
        element = converter(dtype.element)  # type: ignore[arg-type]

        def convert_array(value: Any) -> list[Any]:
            if not isinstance(value, list | tuple):
                raise RecordError(f"expected a list of {dtype.element}, got {describe_value(value)}")
            return [None if v is None else element(v) for v in value]

        return convert_array
    return _SCALARS[dtype.name]


def _int64(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RecordError(f"expected an int64 (a number or a decimal string), got {describe_value(value)}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise RecordError(
                f"expected an int64 (a number or a decimal string), got {describe_value(value)}"
            ) from None
    if not INT64_MIN <= value <= INT64_MAX:
        raise RecordError(f"{value} is outside the int64 range")
    return value


def _float64(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"expected a float64 (a number), got {describe_value(value)}")
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise RecordError(f"expected a finite float64, got {describe_value(value)}")
    return result


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise RecordError(f"expected a string, got {describe_value(value)}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"expected true or false, got {describe_value(value)}")
    return value


def _timestamp(value: Any) -> str:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise RecordError(
                f"expected an ISO-8601 timestamp such as 2024-05-01T12:00:00Z, got {describe_value(value)}"
            ) from None
    elif isinstance(value, datetime):
        parsed = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    else:
        raise RecordError(f"expected an ISO-8601 timestamp string, got {describe_value(value)}")
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise RecordError(f"timestamp {describe_value(value)} is out of range") from None
    return parsed.isoformat() + "Z"


_SCALARS: dict[str, Callable[[Any], Any]] = {
    "int64": _int64,
    "float64": _float64,
    "string": _string,
    "bool": _bool,
    "timestamp": _timestamp,
}
