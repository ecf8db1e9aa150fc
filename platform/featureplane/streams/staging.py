"""A stream view's event log staged in S3, where the stream Lambda can write it without an offline
store's client (``streams.aws_lambda``); the platform loads it into the view's event log
(``streams.staging_load``).

Layout under the staging location (``streams.staging``, ``s3://bucket/prefix``), per view table
(``<workspace>/<view>/g<generation>``)::

    <prefix>/<table_id>/events/<shard>/<last>-<first>.ndjson   a chunk's applied events
    <prefix>/<table_id>/handover.json                           the hand-over state

An events object is newline-delimited JSON: a header line (table, shard, processing time, number of
events), then one line per event (sequence as decimal text, event time and timestamp values in µs,
entity key, logged column values). ``last`` and ``first`` are the sequence numbers of its last and
first event, zero-padded to 40 digits, so a shard's keys sort by last event and a listing that starts
after its checkpoint finds exactly the objects holding events after it (what a retry re-applies,
``logged_after``: a cold start lists each shard's pending objects only). The processor's
decisions for a chunk depend only on the shard's committed state, so a chunk retried with the same
records stages the same events under the same key: it overwrites its object. A retry over other
records (a longer batch) stages some events twice; the load keeps each once (readers of the event log
dedupe by record identity).

Exactly once, as for the Delta and Snowflake logs (``offline_stores.event_log``): the Lambda stages a
chunk's events before its online commit, and a retried chunk re-applies the events staged after the
checkpoint (``logged_after``). The load moves into the event log only the objects whose last event is
at or before its shard's online checkpoint (committed online), and removes them after that commit; a
load interrupted between the two loads them again, and reads keep one row per identity.

When staging is configured the hand-over state lives here, for every writer of the view: the Lambda
fixes the boundary, the batch backfill reserves its history (``HandoverInStaging`` wraps the view's
event log), each change a conditional PUT (``If-None-Match`` to create, ``If-Match`` the ETag read to
replace), so two writers cannot both win. Standard library and boto3 only: the Lambda imports this.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.event_log import Handover, LoggedEvent, StreamEventLog

FORMAT = 1
DIGITS = 40  # Kinesis sequence numbers have up to 39 decimal digits (128 bits)
HANDOVER_ATTEMPTS = 20


class StagingError(RuntimeError):
    """A staged object cannot be read or written (its key and the reason)."""


@dataclass(frozen=True)
class StagedObject:
    """An events object of a view's staging area, by its key."""

    key: str
    shard: str
    first: int
    last: int


class StagingArea:
    """The staging location: one S3 bucket and key prefix (``streams.staging``). The client honours the
    usual AWS settings (``AWS_REGION``, ``AWS_ENDPOINT_URL_S3`` ...) unless region or endpoint are given."""

    def __init__(self, uri: str, region: str | None = None, endpoint_url: str | None = None) -> None:
        if not uri.startswith("s3://"):
            raise ValueError(f"staging location {uri!r} is not an S3 location (s3://bucket/prefix)")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"staging location {uri!r} names no bucket (s3://bucket/prefix)")
        self.uri, self.bucket, self.prefix = uri.rstrip("/"), bucket, prefix.strip("/")
        self.region, self.endpoint_url = region, endpoint_url
        self._client: Any = None

    def __str__(self) -> str:
        return self.uri

    @property
    def client(self) -> Any:
        if self._client is None:
            from featureplane.util.aws import client

            kwargs: dict[str, Any] = {"region_name": self.region}
            if self.endpoint_url:
                kwargs["endpoint_url"] = self.endpoint_url
            self._client = client("s3", **kwargs)
        return self._client

    def table_prefix(self, table_id: str) -> str:
        return "/".join(p for p in (self.prefix, table_id) if p) + "/"

    def events_prefix(self, table_id: str) -> str:
        return self.table_prefix(table_id) + "events/"

    def shard_prefix(self, table_id: str, shard: str) -> str:
        return f"{self.events_prefix(table_id)}{quote(shard, safe='')}/"

    def events_key(self, table_id: str, shard: str, first: int, last: int) -> str:
        return f"{self.shard_prefix(table_id, shard)}{last:0{DIGITS}d}-{first:0{DIGITS}d}.ndjson"

    def handover_key(self, table_id: str) -> str:
        return self.table_prefix(table_id) + "handover.json"

    # -- objects -----------------------------------------------------------------------------------

    def put(self, key: str, body: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        """Write an object; its new ETag. ``ConflictError`` when a condition does not hold."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": body}
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        try:
            return self.client.put_object(**kwargs).get("ETag", "")
        except Exception as exc:
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise ConflictError(key) from None
            raise StagingError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc

    def get(self, key: str) -> tuple[bytes, str] | None:
        """An object's content and ETag (None when it does not exist)."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise StagingError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc
        return response["Body"].read(), response.get("ETag", "")

    def list_events(
        self, table_id: str, shard: str | None = None, after: int | None = None
    ) -> list[StagedObject]:
        """The view table's staged events objects by shard and sequence: every one, or ``shard`` 's,
        or (with ``after``) those of ``shard`` holding an event after sequence number ``after``."""
        prefix = self.events_prefix(table_id)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if shard is not None:
            kwargs["Prefix"] = self.shard_prefix(table_id, shard)
            if after is not None:  # every key of a last event at or before it sorts before this one
                kwargs["StartAfter"] = f"{kwargs['Prefix']}{after:0{DIGITS}d}-{'9' * DIGITS}.ndjson"
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            for item in page.get("Contents", []):
                found.append(self._parse_key(item["Key"], prefix))
        return sorted(found, key=lambda o: (o.shard, o.last, o.first))

    def staged_shards(self, table_id: str) -> list[str]:
        """The shards with staged events objects of the view table."""
        prefix = self.events_prefix(table_id)
        shards = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            shards += [
                unquote(p["Prefix"][len(prefix) :].rstrip("/")) for p in page.get("CommonPrefixes", [])
            ]
        return sorted(shards)

    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True}
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StagingError(
                    f"cannot remove {len(errors)} staged object(s) from s3://{self.bucket}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )

    def _parse_key(self, key: str, prefix: str) -> StagedObject:
        shard, _, name = key[len(prefix) :].partition("/")
        last, _, first = name.removesuffix(".ndjson").partition("-")
        if not shard or not name.endswith(".ndjson") or not first.isdigit() or not last.isdigit():
            raise StagingError(
                f"s3://{self.bucket}/{key} is not a staged events object (<shard>/<last>-<first>.ndjson)"
            )
        return StagedObject(key, unquote(shard), int(first), int(last))

    # -- events objects ------------------------------------------------------------------------------

    def write_events(self, table_id: str, events: Sequence[LoggedEvent], processed_at_us: int) -> list[str]:
        """Stage ``events`` (one object per shard, in sequence order); the keys written."""
        by_shard: dict[str, list[LoggedEvent]] = {}
        for event in events:
            by_shard.setdefault(event.shard, []).append(event)
        keys = []
        for shard, mine in sorted(by_shard.items()):
            mine.sort(key=lambda e: e.sequence)
            key = self.events_key(table_id, shard, mine[0].sequence, mine[-1].sequence)
            self.put(key, encode_events(table_id, shard, mine, processed_at_us))
            keys.append(key)
        return keys

    def read_events(self, table_id: str, staged: StagedObject) -> tuple[list[LoggedEvent], int]:
        """A staged object's events and their processing time (µs)."""
        got = self.get(staged.key)
        if got is None:
            raise StagingError(f"s3://{self.bucket}/{staged.key} was removed while being read")
        return decode_events(got[0], table_id, staged.shard, f"s3://{self.bucket}/{staged.key}")


class ConflictError(StagingError):
    """A conditional write lost to another writer."""


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def encode_events(table_id: str, shard: str, events: Sequence[LoggedEvent], processed_at_us: int) -> bytes:
    header = {"format": FORMAT, "table_id": table_id, "shard": shard, "processed_at_us": processed_at_us,
              "events": len(events)}  # fmt: skip
    lines = [json.dumps(header, separators=(",", ":"))]
    for event in events:
        line = {
            "sequence": str(event.sequence),
            "ts": event.ts,
            "key": list(event.key),
            "values": event.values,
        }
        lines.append(json.dumps(line, separators=(",", ":"), allow_nan=False))
    return ("\n".join(lines) + "\n").encode()


def decode_events(data: bytes, table_id: str, shard: str, where: str) -> tuple[list[LoggedEvent], int]:
    """The events of an object written by ``encode_events``; StagingError naming the line if not."""
    lines = data.decode().splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StagingError(f"{where}: line 1 is not a staged events header of format {FORMAT}")
    if header.get("table_id") != table_id or header.get("shard") != shard:
        raise StagingError(
            f"{where}: holds events of {header.get('table_id')!r} shard {header.get('shard')!r}, "
            f"not {table_id!r} shard {shard!r}"
        )
    events = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            row = json.loads(line)
            events.append(
                LoggedEvent(
                    tuple(row["key"]), int(row["ts"]), dict(row["values"]), shard, int(row["sequence"])
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StagingError(f"{where}: line {number} is not a staged event ({exc!r:.80})") from None
    if len(events) != header.get("events"):
        raise StagingError(f"{where}: holds {len(events)} events, its header says {header.get('events')}")
    return events, int(header["processed_at_us"])


# -- the hand-over ---------------------------------------------------------------------------------


class StagedHandover:
    """A view's hand-over state as an object of the staging area, changed by conditional PUTs.
    ``seed`` gives the state before the object exists (a log's own, from before staging was set)."""

    def __init__(self, area: StagingArea, table_id: str, seed: Callable[[], Handover] | None = None) -> None:
        self.area = area
        self.key = area.handover_key(table_id)
        self.seed = seed or Handover

    def _read(self) -> tuple[Handover, str | None]:
        got = self.area.get(self.key)
        if got is None:
            return self.seed(), None
        try:
            data = json.loads(got[0])
            return Handover(data.get("boundary_us"), data.get("backfilled_through_us")), got[1]
        except (ValueError, AttributeError):
            raise StagingError(f"s3://{self.area.bucket}/{self.key} is not a hand-over state") from None

    def handover(self) -> Handover:
        return self._read()[0]

    def change(self, step: Callable[[Handover], Handover]) -> Handover:
        """Apply ``step`` to the stored state atomically (retried when another writer won); the new state."""
        for attempt in range(HANDOVER_ATTEMPTS):
            current, etag = self._read()
            new = step(current)
            if new == current and etag is not None:
                return new
            body = json.dumps(
                {"boundary_us": new.boundary_us, "backfilled_through_us": new.backfilled_through_us}
            )
            try:
                self.area.put(self.key, body.encode(), if_match=etag, if_none_match=etag is None)
            except ConflictError:
                time.sleep(0.01 * (attempt + 1))
                continue
            return new
        raise StagingError(
            f"s3://{self.area.bucket}/{self.key}: the hand-over state kept changing; gave up after "
            f"{HANDOVER_ATTEMPTS} attempts"
        )

    def claim_boundary(self, proposed_us: int) -> int:
        def step(current: Handover) -> Handover:
            if current.boundary_us is not None:
                return current
            through = current.backfilled_through_us
            return Handover(max(proposed_us, through or proposed_us), through)

        return self.change(step).boundary_us  # type: ignore[return-value]

    def reserve_backfill(self, start_us: int, end_us: int) -> int:
        def step(current: Handover) -> Handover:
            if current.boundary_us is not None:
                return current
            return Handover(None, max(end_us, current.backfilled_through_us or end_us))

        boundary = self.change(step).boundary_us
        return end_us if boundary is None else min(end_us, boundary)


# -- the logs ----------------------------------------------------------------------------------------


class _HandoverInStagingArea(StreamEventLog):
    """An event log whose hand-over state is ``staged_handover``."""

    staged_handover: StagedHandover

    def handover(self) -> Handover:
        return self.staged_handover.handover()

    def claim_boundary(self, proposed_us: int) -> int:
        return self.staged_handover.claim_boundary(proposed_us)

    def reserve_backfill(self, start_us: int, end_us: int) -> int:
        return self.staged_handover.reserve_backfill(start_us, end_us)


class StagedEventLog(_HandoverInStagingArea):
    """The event log as the stream Lambda writes it: appends staged in S3, the hand-over state beside
    them. The backfill and readers use the view's offline event log, into which the staging is loaded."""

    def __init__(self, area: StagingArea, table_id: str, view: FeatureViewSpec) -> None:
        self.area = area
        self.table_id = table_id
        self.view = view
        self.staged_handover = StagedHandover(area, table_id)

    def append(self, events: Sequence[LoggedEvent], processed_at_us: int) -> None:
        if events:
            self.area.write_events(self.table_id, events, processed_at_us)

    def logged_after(self, positions: dict[str, int]) -> set[tuple[str, int]]:
        """Lists only each shard's objects holding events after its checkpoint (keys sort by last)."""
        found = set()
        for shard in self.area.staged_shards(self.table_id):
            done = positions.get(shard)
            for staged in self.area.list_events(self.table_id, shard, done):
                events, _ = self.area.read_events(self.table_id, staged)
                found |= {(e.shard, e.sequence) for e in events if done is None or e.sequence > done}
        return found

    def write_backfill(self, start_us: int, end_us: int, rows: Any) -> int:
        raise NotImplementedError(
            f"{self.table_id}: the staged event log in {self.area} takes the stream's events only; the backfill "
            "writes the view's offline event log"
        )

    def events(self) -> Any:
        raise NotImplementedError(
            f"{self.table_id}: the staged event log in {self.area} is not read directly: load it into the view's "
            "offline event log (`featureplane stream load-staged`) and read that"
        )


class HandoverInStaging(_HandoverInStagingArea):
    """A view's offline event log whose hand-over state lives in the staging area, shared with the
    stream Lambda; everything else is the log's own. The log's own hand-over state seeds it."""

    def __init__(self, log: StreamEventLog, area: StagingArea, table_id: str) -> None:
        self.log = log
        self.staged_handover = StagedHandover(area, table_id, seed=log.handover)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)

    def append(self, events: Sequence[LoggedEvent], processed_at_us: int) -> None:
        self.log.append(events, processed_at_us)

    def append_batches(self, batches: Sequence[tuple[Sequence[LoggedEvent], int]]) -> None:
        self.log.append_batches(batches)

    def logged_after(self, positions: dict[str, int]) -> set[tuple[str, int]]:
        return self.log.logged_after(positions)

    def write_backfill(self, start_us: int, end_us: int, rows: Any) -> int:
        return self.log.write_backfill(start_us, end_us, rows)

    def events(self) -> Any:
        return self.log.events()


def staging_area(settings: Any) -> StagingArea | None:
    """The staging area of a configuration's ``streams`` section (None when not configured)."""
    uri = getattr(settings, "staging", None)
    if not uri:
        return None
    return StagingArea(uri, settings.staging_region, settings.staging_endpoint_url)
