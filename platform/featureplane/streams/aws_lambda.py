"""AWS Lambda entry point for Kinesis event-source mappings: ``featureplane.streams.aws_lambda.handler``.

The event source mapping hands the function a batch of one shard's records, in sequence order. The
handler turns them into ``StreamRecord`` s (the shard from ``eventID``, the sequence number, the
base64 JSON ``data``) and applies them with the same core as ``featureplane stream run``
(``streams.processor``) to every stream feature view whose Kinesis source is the batch's stream, on
the DynamoDB online store (tiles written per entity by conditional ``UpdateItem``, so the functions of
all shards run concurrently; each commits only its own shard's state). For a view with
``offline=True``, each chunk's applied events are staged in S3 before its online commit
(``streams.staging``: the function holds no offline store client); the platform loads them into the
view's Delta or Snowflake event log (``streams.staging_load``). Without a staging location such a view
is processed online only, with a warning.

A batch is applied in chunks of ``FEATUREPLANE_STREAM_CHUNK_RECORDS`` records (default 500), each
committed with the shard's checkpoint. When a chunk cannot be committed (DynamoDB unreachable,
conflicts that do not settle, the function's time running out), the handler stops there and answers
``{"batchItemFailures": [{"itemIdentifier": <its first record's sequence number>}]}``: with
``ReportBatchItemFailures`` Lambda retries from that record, and the records before it are not
processed again. Records applied to some tiles but not checkpointed are skipped by those tiles on the
retry, so every record counts once. A malformed record (not base64, not a JSON object, missing a join
key or the event time) is counted as invalid in the shard's state and logged, not a failure: it must
not stop the shard. An event that is not a Kinesis batch at all raises (the function is misconfigured).

Records of a shard must arrive in sequence order: the event source mapping's ``ParallelizationFactor``
must be 1 (docs/streams.md explains why). Inside Lambda the function checks its mappings
(``lambda:ListEventSourceMappings``) when it first sees a stream and every few minutes after, and
refuses to process a stream whose mapping has a higher factor (the invocation fails, so nothing is
skipped; set ``FEATUREPLANE_STREAM_CHECK_MAPPINGS=false`` to not check).

Configuration, as for the lookup function (``serving.aws_lambda``): ``FEATUREPLANE_CONFIG`` (a bundled
featureplane.yaml; its registry, or its ``serving.registry_snapshot`` when set) or the
``FEATUREPLANE_REGISTRY_SNAPSHOT`` / ``FEATUREPLANE_DYNAMODB_*`` variables, and:

- ``FEATUREPLANE_STREAM_VIEWS``: ``workspace/view`` names, comma-separated, to process only these
  (default: every stream view of a live workspace whose source is the batch's stream);
- ``FEATUREPLANE_STREAM_CHUNK_RECORDS`` (default 500);
- ``FEATUREPLANE_STREAM_STAGING`` (``s3://bucket/prefix``; default the configuration's
  ``streams.staging``), ``FEATUREPLANE_STREAM_STAGING_REGION``, ``FEATUREPLANE_STREAM_STAGING_ENDPOINT_URL``:
  where offline views' events are staged;
- ``FEATUREPLANE_REGISTRY_REFRESH_SECONDS`` (default 30): how often the registry (or snapshot) is
  checked for a new apply.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from featureplane.config import Config, ConfigError, load_config
from featureplane.registry.snapshot import config_from_lambda_environment
from featureplane.streams.backend import stream_store_for
from featureplane.streams.kinesis import decode_data
from featureplane.streams.processor import StreamProcessor, StreamRecord
from featureplane.streams.staging import StagedEventLog, StagingArea, staging_area
from featureplane.streams.store import StreamStore
from featureplane.util.stream_settings import parse_staging

log = logging.getLogger("featureplane.streams")

CHUNK_RECORDS = 500
TIME_MARGIN_MS = 5_000  # no chunk is started with less time left than this
MAPPING_CHECK_SECONDS = 300.0  # how often a warm function re-checks its event source mappings
_function: StreamFunction | None = None


class EventError(ValueError):
    """The event is not a Kinesis batch this handler understands."""


@dataclass(frozen=True)
class KinesisBatch:
    """An event's records with their identity: the stream's ARN, and per record its sequence number
    as Kinesis wrote it (what ``itemIdentifier`` reports)."""

    stream_arn: str
    records: list[StreamRecord]
    identifiers: list[str]


def parse_event(event: Any) -> KinesisBatch:
    """The records of a Kinesis event-source-mapping event (one shard's batch)."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise EventError("the event is not a Kinesis batch: it has no Records list")
    arn, shard = None, None
    records, identifiers = [], []
    for i, item in enumerate(event["Records"]):
        where = f"Records[{i}]"
        if not isinstance(item, dict) or item.get("eventSource") != "aws:kinesis":
            raise EventError(f"{where} is not a Kinesis record (eventSource is not aws:kinesis)")
        kinesis = item.get("kinesis")
        sequence = kinesis.get("sequenceNumber") if isinstance(kinesis, dict) else None
        if not isinstance(sequence, str) or not sequence.isdigit():
            raise EventError(f"{where} has no kinesis.sequenceNumber of digits, got {sequence!r:.40}")
        event_id = item.get("eventID")
        if not isinstance(event_id, str) or ":" not in event_id:
            raise EventError(f"{where} has no eventID of the form shardId-...:<sequence number>")
        if arn is None:
            arn, shard = item.get("eventSourceARN"), event_id.rpartition(":")[0]
        elif item.get("eventSourceARN") != arn or event_id.rpartition(":")[0] != shard:
            raise EventError(
                f"{where} is of another stream or shard than Records[0]: a batch holds one shard"
            )
        records.append(StreamRecord(shard, int(sequence), _data(kinesis.get("data"))))  # type: ignore[arg-type, union-attr]
        identifiers.append(sequence)
    if not isinstance(arn, str) and records:
        raise EventError("Records[0] has no eventSourceARN")
    return KinesisBatch(arn or "", records, identifiers)


def _data(data: Any) -> Any:
    """A record's data as the processor takes it: the JSON object, or what is not one (which the
    processor counts as invalid and reports)."""
    if not isinstance(data, str):
        return f"kinesis.data is not a base64 string: {data!r:.40}"
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return f"kinesis.data is not base64: {data[:40]!r}"
    return decode_data(raw)


def stream_name(arn: str) -> str:
    """``clicks`` in ``arn:aws:kinesis:us-east-1:123456789012:stream/clicks``."""
    return arn.rpartition(":stream/")[2] or arn


# -- the views a stream feeds ----------------------------------------------------------------------


def config_from_environment(environ: Mapping[str, str] | None = None) -> Config:
    env = dict(os.environ if environ is None else environ)
    if env.get("FEATUREPLANE_CONFIG"):
        return load_config(env["FEATUREPLANE_CONFIG"])
    return config_from_lambda_environment(env)


def _wanted(environ: Mapping[str, str]) -> set[tuple[str, str]] | None:
    text = environ.get("FEATUREPLANE_STREAM_VIEWS", "").strip()
    if not text:
        return None
    wanted = set()
    for entry in (e.strip() for e in text.split(",")):
        workspace, _, view = entry.partition("/")
        if not workspace or not view or "/" in view:
            raise ConfigError(f"FEATUREPLANE_STREAM_VIEWS: {entry!r} is not workspace/view")
        wanted.add((workspace, view))
    return wanted


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    value = environ.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return number


def _staging(environ: Mapping[str, str], config: Config) -> StagingArea | None:
    """Where offline views' events are staged: ``FEATUREPLANE_STREAM_STAGING*``, else ``streams``."""
    uri = environ.get("FEATUREPLANE_STREAM_STAGING", "").strip()
    if not uri:
        return staging_area(config.streams)
    try:
        uri = parse_staging(uri, "FEATUREPLANE_STREAM_STAGING")  # type: ignore[assignment]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    region = environ.get("FEATUREPLANE_STREAM_STAGING_REGION") or None
    return StagingArea(uri, region, environ.get("FEATUREPLANE_STREAM_STAGING_ENDPOINT_URL") or None)


class StreamFunction:
    """What the function keeps between invocations: the registry (or snapshot), the stream store,
    and per stream the processors of the views it feeds (rebuilt after an apply)."""

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        self.config = config
        self.wanted = _wanted(env)
        self.chunk = int(_number(env, "FEATUREPLANE_STREAM_CHUNK_RECORDS", CHUNK_RECORDS))
        serving = config.serving or {}
        default_refresh = float(serving.get("registry_refresh_seconds") or 30.0)
        self.refresh_seconds = _number(env, "FEATUREPLANE_REGISTRY_REFRESH_SECONDS", default_refresh)
        location = serving.get("registry_snapshot")
        if location:
            from featureplane.registry.snapshot import SnapshotDocumentSource, open_location

            self.source: Any = SnapshotDocumentSource(open_location(str(location), config.root))
        else:
            from featureplane.registry import open_registry

            self.source = open_registry(config)
        from featureplane.online_stores import create_online_store

        self.online = create_online_store(config.online_store, config.resolve)
        self.store: StreamStore = stream_store_for(self.online)
        self._versions: dict[str, int] = {}
        self._checked = 0.0
        self._processors: dict[str, list[StreamProcessor]] = {}
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME") or ""
        self.region = env.get("AWS_REGION") or None
        checking = env.get("FEATUREPLANE_STREAM_CHECK_MAPPINGS", "true").strip().lower()
        self.check_mappings = bool(self.function_name) and checking not in ("false", "0", "no", "off")
        self._mappings_checked: dict[str, float] = {}
        self._lambda: Any = None
        self.staging = _staging(env, config)

    def _live(self) -> list[str]:
        listing = getattr(self.source, "list_workspaces", None)
        if listing is not None:
            return sorted(w.name for w in listing() if w.live)
        return sorted(n for n in getattr(self.source, "workspaces", []) if self.source.load(n).live)

    def _refresh(self) -> None:
        if time.monotonic() - self._checked < self.refresh_seconds and self._checked:
            return
        poll = getattr(self.source, "poll", None)
        if poll is not None:
            poll()
        versions = {name: self.source.version(name) for name in self._live()}
        if versions != self._versions:
            self._versions, self._processors = versions, {}
        self._checked = time.monotonic()

    def processors(self, stream_arn: str) -> list[StreamProcessor]:
        """The processors of the views the stream feeds, in workspace and view order."""
        self._refresh()
        if self.check_mappings:
            self._check_mappings(stream_arn)
        if stream_arn not in self._processors:
            self._processors[stream_arn] = self._build(stream_arn)
        return self._processors[stream_arn]

    def _check_mappings(self, stream_arn: str) -> None:
        """ConfigError if an event source mapping of this function for the stream has a
        ParallelizationFactor above 1 (a warning if the mappings cannot be read)."""
        checked = self._mappings_checked.get(stream_arn)
        if checked is not None and time.monotonic() - checked < MAPPING_CHECK_SECONDS:
            return
        try:
            if self._lambda is None:
                from featureplane.util.aws import client

                self._lambda = client("lambda", region_name=self.region)
            mappings, marker = [], None
            while True:
                kwargs: dict[str, Any] = {"FunctionName": self.function_name, "EventSourceArn": stream_arn}
                if marker:
                    kwargs["Marker"] = marker
                response = self._lambda.list_event_source_mappings(**kwargs)
                mappings += response.get("EventSourceMappings", [])
                marker = response.get("NextMarker")
                if not marker:
                    break
        except Exception as exc:
            log.warning(
                "could not read the event source mappings of %s to check their ParallelizationFactor (%s); "
                "it must be 1",
                self.function_name,
                exc,
            )
            self._mappings_checked[stream_arn] = time.monotonic()
            return
        for mapping in mappings:
            factor = mapping.get("ParallelizationFactor") or 1
            if factor > 1:
                raise ConfigError(
                    f"the event source mapping {mapping.get('UUID')} of {self.function_name} for {stream_arn} has "
                    f"ParallelizationFactor {factor}; it must be 1: a shard's checkpoint is the sequence number of "
                    "its last record processed, and concurrent batches of one shard would skip each other's "
                    "records as processed"
                )
        self._mappings_checked[stream_arn] = time.monotonic()

    def _build(self, stream_arn: str) -> list[StreamProcessor]:
        from featureplane.definitions.transformation import load_python_function

        name = stream_name(stream_arn)
        out, found = [], set()
        for workspace in self._versions:
            state = self.source.load(workspace)
            for view in sorted(state.definitions.feature_views.values(), key=lambda v: v.name):
                if view.kind != "stream" or (
                    self.wanted is not None and (workspace, view.name) not in self.wanted
                ):
                    continue
                source = state.definitions.sources[view.sources[0]]
                config = source.stream or {}
                if config.get("type") != "kinesis" or config.get("stream_name") not in (name, stream_arn):
                    continue
                transform = load_python_function(view.transformation) if view.transformation else None
                table_id = state.table_id(view.name)
                event_log = None
                if view.offline and self.staging is not None:
                    event_log = StagedEventLog(self.staging, table_id, view)
                elif view.offline:
                    log.warning(
                        "stream feature view %s/%s has offline=True, but no staging location is set "
                        "(FEATUREPLANE_STREAM_STAGING or streams.staging): its offline event log is not "
                        "appended to (docs/streams.md, On AWS Lambda)",
                        workspace,
                        view.name,
                    )
                out.append(
                    StreamProcessor(view, table_id, self.store, transform, source.timestamp_field, event_log)
                )
                found.add((workspace, view.name))
        missing = sorted(self.wanted - found) if self.wanted is not None else []
        if missing:
            log.warning(
                "FEATUREPLANE_STREAM_VIEWS names %s, which %s not a stream feature view of a live workspace "
                "reading %s",
                ", ".join(f"{w}/{v}" for w, v in missing),
                "is" if len(missing) == 1 else "are",
                name,
            )
        return out

    def close(self) -> None:
        self.online.close()
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


def init(environ: Mapping[str, str] | None = None) -> StreamFunction:
    """Build the function's state (idempotent; at import inside Lambda)."""
    global _function
    if _function is None:
        _function = StreamFunction(config_from_environment(environ), environ)
    return _function


def reset() -> None:
    """Forget the function's state (tests; a new configuration)."""
    global _function
    if _function is not None:
        _function.close()
    _function = None


# -- the handler -----------------------------------------------------------------------------------


def _time_left_ms(context: Any) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return float(remaining()) if remaining is not None else float("inf")


def process_batch(function: StreamFunction, batch: KinesisBatch, context: Any = None) -> int | None:
    """Apply the batch to every view its stream feeds; the index of the first record not committed
    for some view (None when all are)."""
    failed: int | None = None
    processors = function.processors(batch.stream_arn)
    if not processors and batch.records:
        log.warning("no stream feature view reads %s: its records are not processed", batch.stream_arn)
    for processor in processors:
        for start in range(0, len(batch.records), function.chunk):
            if failed is not None and start >= failed:
                break  # retried from there anyway
            if start and _time_left_ms(context) < TIME_MARGIN_MS:
                failed = start if failed is None else min(failed, start)
                log.warning("%s: time is running out; the rest of the batch is retried", processor.table_id)
                break
            chunk = batch.records[start : start + function.chunk]
            try:
                result = processor.process(chunk)
            except Exception:
                log.exception(
                    "%s: records %s to %s of %s could not be committed; retried from there",
                    processor.table_id,
                    batch.identifiers[start],
                    batch.identifiers[start + len(chunk) - 1],
                    chunk[0].shard,
                )
                failed = start if failed is None else min(failed, start)
                break
            log.info("%s %s: %s", processor.table_id, chunk[0].shard, result.describe())
    return failed


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The Lambda function: ``{"batchItemFailures": [...]}`` as ``ReportBatchItemFailures`` expects."""
    batch = parse_event(event)
    failed = process_batch(init(), batch, context)
    if failed is None:
        return {"batchItemFailures": []}
    return {"batchItemFailures": [{"itemIdentifier": batch.identifiers[failed]}]}


def _in_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or os.environ.get("FEATUREPLANE_LAMBDA_INIT"))


if _in_lambda():
    logging.getLogger("featureplane").setLevel(os.environ.get("FEATUREPLANE_LOG_LEVEL", "INFO"))
    try:
        init()
    except Exception:  # the first invocation tries again, and fails with the reason if it persists
        log.exception("featureplane stream function initialisation failed")
