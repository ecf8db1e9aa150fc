"""The production online store: Amazon DynamoDB through boto3's low-level client.

Layout: one DynamoDB table per workspace (``<table_prefix><workspace>``) with a single string partition
key ``pk = "<table_id>|<entity key>"`` (the entity key is the canonical JSON of the join-key tuple). Every
feature view of a workspace lives in the same table, so a feature-service lookup of one entity is ONE
``BatchGetItem``; lookups above 100 keys are split into parallel calls. Each item holds:

- ``ts`` (N): the event timestamp in microseconds since the epoch, UTC (reads enforce ttl with it);
- ``v`` (S): the view's feature values in declared order, as JSON;
- ``exp`` (N): for views with a ttl, the epoch second when the row expires (event time + ttl); the
  table's DynamoDB TTL is enabled on this attribute so expired rows are eventually deleted.

A view's sync marker is the item ``"<table_id>|#sync"`` (entity keys always start with ``[``).

Writes are parallel ``BatchWriteItem`` calls of 25 items; unprocessed items and throttling errors are
retried with exponential backoff and full jitter until everything is written, or a
``DynamoDBWriteError`` names what was not. ``only_if_newer`` writes (ingest) are conditional
``PutItem`` calls, so an older event never replaces a newer one even under concurrent writers.
botocore's own retries are turned off: this module owns retrying, so the backoff policy is one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import partial
from itertools import islice
from typing import Any, TypeVar

import orjson

from featureplane.online_stores.base import (
    EncodedRow,
    OnlineRow,
    OnlineStore,
    OnlineValue,
    encode_key,
    expiry_cutoff_us,
)
from featureplane.online_stores.dynamodb_access import (
    EXPIRES,
    PK,
    TS,
    VALUES,
    DynamoDBAccess,
    DynamoDBError,
    DynamoDBWriteError,
    error_code,
    hint,
    retryable,
)

T = TypeVar("T")
log = logging.getLogger("featureplane.online_stores.dynamodb")

_NAMES = {"#pk": PK, "#ts": TS, "#v": VALUES}
_PROJECTION = "#pk, #ts, #v"

SYNC_SUFFIX = "|#sync"
MAX_BATCH_WRITE = 25
MAX_BATCH_GET = 100


def _describe_keys(keys: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


class DynamoDBOnlineStore(DynamoDBAccess, OnlineStore):
    """Feature rows in DynamoDB, one table per workspace.

    Settings (the ``online_store`` section of featureplane.yaml): ``region``, ``table_prefix``
    (default ``featureplane_``), ``endpoint_url`` (a DynamoDB-compatible server), ``billing_mode``
    (``PAY_PER_REQUEST`` or ``PROVISIONED`` with ``read_capacity``/``write_capacity``),
    ``consistent_reads``, ``max_workers`` (parallel calls), ``max_attempts`` (consecutive attempts
    without progress before giving up), ``retry_base_seconds``/``retry_max_seconds`` (backoff),
    ``connect_timeout``/``read_timeout`` (seconds per call).
    """

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> DynamoDBOnlineStore:
        import inspect

        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "sleep"}
        unknown = sorted(set(settings) - accepted - {"type"})
        if unknown:
            raise ValueError(
                f"online_store (dynamodb): unknown setting(s) {', '.join(unknown)}; "
                f"expected {', '.join(sorted(accepted))}"
            )
        return cls(**{k: v for k, v in settings.items() if k != "type"})

    def describe(self) -> dict[str, Any]:
        return {
            "type": "dynamodb",
            "region": self.region,
            "table_prefix": self.table_prefix,
            "endpoint_url": self.endpoint_url,
        }

    # -- client and threads ----------------------------------------------------------------------

    # -- naming ----------------------------------------------------------------------------------

    def table_name(self, table_id: str) -> str:
        """The DynamoDB table holding ``table_id`` (``<workspace>/<view>/g<n>``): one per workspace."""
        return self.table_prefix + table_id.split("/", 1)[0]

    @staticmethod
    def item_key(table_id: str, key: Sequence[Any]) -> str:
        return f"{table_id}|{encode_key(key)}"

    # -- retries ---------------------------------------------------------------------------------

    # -- writes ----------------------------------------------------------------------------------

    def _item(self, table_id: str, row: OnlineRow, ttl_seconds: int | None) -> dict[str, Any]:
        event_ts = int(row.event_ts)
        item: dict[str, Any] = {
            PK: {"S": self.item_key(table_id, row.key)},
            TS: {"N": str(event_ts)},
            VALUES: {"S": orjson.dumps(list(row.values)).decode()},
        }
        if ttl_seconds:
            item[EXPIRES] = {"N": str(event_ts // 1_000_000 + int(ttl_seconds))}
        return item

    def write(
        self,
        table_id: str,
        rows: Iterable[OnlineRow],
        *,
        only_if_newer: bool = False,
        ttl_seconds: int | None = None,
    ) -> int:
        table = self.table_name(table_id)
        items = (self._item(table_id, row, ttl_seconds) for row in rows)
        if only_if_newer:
            return self._put_if_newer(table, items)
        return self._batch_write(table, ({"PutRequest": {"Item": item}} for item in items), "written")

    def write_encoded(
        self, table_id: str, rows: Iterable[EncodedRow], *, ttl_seconds: int | None = None
    ) -> int:
        """The bulk path: the values' JSON text goes into the item as it is."""
        table = self.table_name(table_id)

        def item(row: EncodedRow) -> dict[str, Any]:
            attributes: dict[str, Any] = {
                PK: {"S": f"{table_id}|{row.entity_key}"},
                TS: {"N": str(int(row.event_ts))},
                VALUES: {"S": row.blob.decode()},
            }
            if ttl_seconds:
                attributes[EXPIRES] = {"N": str(int(row.event_ts) // 1_000_000 + int(ttl_seconds))}
            return attributes

        return self._batch_write(table, ({"PutRequest": {"Item": item(r)}} for r in rows), "written")

    def delete(self, table_id: str, keys: Iterable[tuple]) -> int:
        table = self.table_name(table_id)
        requests = ({"DeleteRequest": {"Key": {PK: {"S": self.item_key(table_id, k)}}}} for k in keys)
        return self._batch_write(table, requests, "deleted")

    def _batch_write(self, table: str, requests: Iterable[dict[str, Any]], verb: str) -> int:
        """Send write requests in parallel batches of 25; return how many were applied.

        Requests are taken a window at a time; within a window a later request for the same key replaces
        an earlier one (DynamoDB refuses duplicate keys in one batch) and windows run one after another,
        so the last request for a key always wins."""
        window = MAX_BATCH_WRITE * self.max_workers * 4
        iterator = iter(requests)
        done = 0
        while True:
            unique: dict[str, dict[str, Any]] = {}
            for request in islice(iterator, window):
                unique[self._request_key(request)] = request
            if not unique:
                return done
            pending = list(unique.values())
            batches = [pending[i : i + MAX_BATCH_WRITE] for i in range(0, len(pending), MAX_BATCH_WRITE)]
            outcomes = self._map(lambda batch: self._write_batch(table, batch, verb), batches)
            failures = [o for o in outcomes if isinstance(o, Exception)]
            if failures:
                raise self._write_failure(table, verb, failures, iterator)
            done += sum(outcomes)

    def _write_failure(
        self, table: str, verb: str, failures: list[Exception], rest: Iterable[dict[str, Any]]
    ) -> Exception:
        """One error naming every item of the call that is not in DynamoDB: the failed batches' and the
        ones never attempted because of them."""
        failed = [k for f in failures if isinstance(f, DynamoDBWriteError) for k in f.keys]
        if len(failed) == 0:
            return failures[0]
        skipped = [self._request_key(r) for r in rest]
        keys = failed + skipped
        reasons = "; ".join(dict.fromkeys(str(f) for f in failures))
        more = f", and {len(skipped)} later item(s) were not attempted" if skipped else ""
        error = DynamoDBWriteError(
            f"DynamoDB table {table}: {len(keys)} item(s) not {verb} ({_describe_keys(keys)}){more}. "
            f"{reasons}",
            table,
            keys,
        )
        error.__cause__ = failures[0]
        return error

    def _write_batch(self, table: str, batch: list[dict[str, Any]], verb: str) -> int:
        pending = batch
        failures = 0
        last_error: BaseException | None = None
        while pending:
            try:
                response = self.client.batch_write_item(RequestItems={table: pending})
            except Exception as exc:
                if not retryable(exc):
                    keys = [self._request_key(r) for r in pending]
                    raise DynamoDBWriteError(
                        f"DynamoDB table {table}: {len(pending)} item(s) not {verb} "
                        f"({_describe_keys(keys)}): {exc}{hint(exc)}",
                        table,
                        keys,
                    ) from exc
                last_error = exc
                failures += 1
            else:
                unprocessed = response.get("UnprocessedItems", {}).get(table, [])
                if len(unprocessed) < len(pending):
                    failures = 0  # progress: start the backoff over
                else:
                    failures += 1
                    last_error = None
                pending = unprocessed
                if not pending:
                    break
            if failures >= self.max_attempts:
                keys = [self._request_key(r) for r in pending]
                reason = (
                    f"last error: {last_error}" if last_error else "DynamoDB kept returning them unprocessed"
                )
                raise DynamoDBWriteError(
                    f"DynamoDB table {table}: {len(pending)} item(s) not {verb} after {failures} attempts "
                    f"without progress ({_describe_keys(keys)}); {reason}",
                    table,
                    keys,
                ) from last_error
            self._backoff(failures)
        return len(batch)

    @staticmethod
    def _request_key(request: dict[str, Any]) -> str:
        body = request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]
        return body[PK]["S"]

    def _put_if_newer(self, table: str, items: Iterable[dict[str, Any]]) -> int:
        """Conditional puts: an item is replaced only by one with an equal or later event timestamp and
        different values, so an older event never overwrites a newer one (checked by DynamoDB itself)."""

        def put(item: dict[str, Any]) -> int:
            try:
                self._call(
                    "put_item",
                    f"table {table}, item {item[PK]['S']}",
                    TableName=table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#pk) OR #ts < :ts OR (#ts = :ts AND #v <> :v)",
                    ExpressionAttributeNames=_NAMES,
                    ExpressionAttributeValues={":ts": item[TS], ":v": item[VALUES]},
                )
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return 0
                raise
            return 1

        written = 0
        iterator = iter(items)
        while True:
            unique: dict[str, dict[str, Any]] = {}
            for item in islice(iterator, MAX_BATCH_WRITE * self.max_workers * 4):
                current = unique.get(item[PK]["S"])
                if current is None or int(item[TS]["N"]) >= int(current[TS]["N"]):
                    unique[item[PK]["S"]] = item
            if not unique:
                return written
            written += sum(self._gather(put, list(unique.values())))

    # -- reads -----------------------------------------------------------------------------------

    def read(self, requests: Sequence[tuple[str, tuple]]) -> list[OnlineValue | None]:
        if not requests:
            return []
        wanted = [(self.table_name(table_id), self.item_key(table_id, key)) for table_id, key in requests]
        found = self._fetch(wanted, encoded=False)
        return [found.get(w) for w in wanted]

    def read_encoded(
        self,
        table_ids: Sequence[str],
        keys: Sequence[tuple],
        fresh_after: Sequence[int | None] | None = None,
    ) -> list[tuple[bytes | None, ...]]:
        wanted = [
            (self.table_name(table_id), self.item_key(table_id, key))
            for key in keys
            for table_id in table_ids
        ]
        found = self._fetch(wanted, encoded=True)
        width = len(table_ids)
        cutoffs = list(fresh_after or [None] * width)
        rows = []
        for first in range(0, len(wanted), width):
            row = []
            for item, cutoff in zip(wanted[first : first + width], cutoffs, strict=True):
                got = found.get(item)
                fresh = got is not None and (cutoff is None or got[0] > cutoff)
                row.append(got[1] if fresh else None)  # type: ignore[index]
            rows.append(tuple(row))
        return rows

    def _fetch(self, wanted: list[tuple[str, str]], encoded: bool) -> dict[tuple[str, str], Any]:
        """The items of the distinct (table, key) pairs in ``wanted``: parallel BatchGetItem calls of
        at most 100 keys each (see ``_read_chunk``)."""
        unique = list(dict.fromkeys(wanted))
        chunks = [unique[i : i + MAX_BATCH_GET] for i in range(0, len(unique), MAX_BATCH_GET)]
        found: dict[tuple[str, str], Any] = {}
        for part in self._gather(partial(self._read_chunk, encoded=encoded), chunks):
            found.update(part)
        return found

    def _read_chunk(self, chunk: list[tuple[str, str]], encoded: bool = False) -> dict[tuple[str, str], Any]:
        """The items of ``chunk``'s keys: OnlineValues, or (event time, values JSON) when ``encoded``."""
        request: dict[str, dict[str, Any]] = {}
        for table, pk in chunk:
            spec = request.setdefault(
                table,
                {
                    "Keys": [],
                    "ProjectionExpression": _PROJECTION,
                    "ExpressionAttributeNames": _NAMES,
                    "ConsistentRead": self.consistent_reads,
                },
            )
            spec["Keys"].append({PK: {"S": pk}})
        found: dict[tuple[str, str], Any] = {}
        failures = 0
        while request:
            response = self._call("batch_get_item", f"{len(chunk)} key(s)", RequestItems=request)
            got = 0
            for table, items in response.get("Responses", {}).items():
                for item in items:
                    stamp, text = int(item[TS]["N"]), item[VALUES]["S"]
                    found[(table, item[PK]["S"])] = (
                        (stamp, text.encode()) if encoded else OnlineValue(stamp, orjson.loads(text))
                    )
                    got += 1
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            failures = 0 if got else failures + 1
            if failures >= self.max_attempts:
                left = sum(len(spec["Keys"]) for spec in request.values())
                raise DynamoDBError(
                    f"DynamoDB BatchGetItem: {left} key(s) still unprocessed after {failures} attempts "
                    "without progress"
                )
            self._backoff(failures)
        return found

    # -- sync markers ----------------------------------------------------------------------------

    def sync_marker(self, table_id: str) -> int | None:
        response = self._call(
            "get_item",
            f"the sync marker of {table_id}",
            TableName=self.table_name(table_id),
            Key={PK: {"S": table_id + SYNC_SUFFIX}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item or "version" not in item:
            return None
        return int(item["version"]["N"])

    def set_sync_marker(self, table_id: str, version: int | None) -> None:
        table, key = self.table_name(table_id), {PK: {"S": table_id + SYNC_SUFFIX}}
        if version is None:
            self._call("delete_item", f"the sync marker of {table_id}", TableName=table, Key=key)
        else:
            self._call(
                "put_item",
                f"the sync marker of {table_id}",
                TableName=table,
                Item={**key, "version": {"N": str(int(version))}},
            )

    # -- tables ----------------------------------------------------------------------------------

    def _scan(
        self,
        table: str,
        what: str,
        where: str,
        names: dict[str, str],
        values: dict[str, Any],
        per_page: Callable[[list[dict[str, Any]]], T],
    ) -> list[T]:
        """A parallel, consistent scan of ``table`` for the items matching ``where`` (their keys only):
        ``per_page`` of each page's items, for every page of every segment."""
        segments = self.max_workers

        def scan(segment: int) -> list[T]:
            results: list[T] = []
            start: dict[str, Any] | None = None
            while True:
                kwargs: dict[str, Any] = {
                    "TableName": table,
                    "ProjectionExpression": "#pk",
                    "FilterExpression": where,
                    "ExpressionAttributeNames": {"#pk": PK, **names},
                    "ExpressionAttributeValues": values,
                    "ConsistentRead": True,
                    "Segment": segment,
                    "TotalSegments": segments,
                }
                if start:
                    kwargs["ExclusiveStartKey"] = start
                page = self._call("scan", what, **kwargs)
                results.append(per_page(page.get("Items", [])))
                start = page.get("LastEvaluatedKey")
                if not start:
                    return results

        return [result for part in self._gather(scan, list(range(segments))) for result in part]

    def drop(self, table_id: str) -> None:
        """Delete every item of ``table_id`` (a parallel scan of its workspace table, then batch deletes)."""
        table = self.table_name(table_id)
        if not self._table_exists(table):
            return

        def delete(items: list[dict[str, Any]]) -> int:
            requests = [{"DeleteRequest": {"Key": {PK: item[PK]}}} for item in items]
            return sum(
                self._write_batch(table, requests[i : i + MAX_BATCH_WRITE], "deleted")
                for i in range(0, len(requests), MAX_BATCH_WRITE)
            )

        prefix = {":prefix": {"S": table_id + "|"}}
        deleted = sum(
            self._scan(table, f"dropping {table_id}", "begins_with(#pk, :prefix)", {}, prefix, delete)
        )
        log.info("dropped %d item(s) of %s from DynamoDB table %s", deleted, table_id, table)

    def sweep_expired(self, table_id: str, ttl: int | timedelta, now: datetime | None = None) -> int:
        """Delete the expired items of ``table_id`` now rather than when DynamoDB's TTL gets to them
        (it takes up to days, and servers without TTL never do): a parallel scan for items at or
        before the cutoff, then one conditional DeleteItem each, so an item rewritten meanwhile with
        a later event time stays."""
        table = self.table_name(table_id)
        if not self._table_exists(table):
            return 0
        cutoff = {"N": str(expiry_cutoff_us(ttl, now))}

        def delete(pk: dict[str, Any]) -> int:
            try:
                self._call(
                    "delete_item",
                    f"table {table}, item {pk['S']}",
                    TableName=table,
                    Key={PK: pk},
                    ConditionExpression="#ts <= :cutoff",
                    ExpressionAttributeNames={"#ts": TS},
                    ExpressionAttributeValues={":cutoff": cutoff},
                )
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return 0
                raise
            return 1

        pages = self._scan(
            table,
            f"sweeping {table_id}",
            "begins_with(#pk, :prefix) AND #ts <= :cutoff",
            {"#ts": TS},
            {":prefix": {"S": table_id + "|["}, ":cutoff": cutoff},
            lambda items: [item[PK] for item in items],
        )
        expired = [pk for page in pages for pk in page]
        deleted = sum(self._gather(delete, expired)) if expired else 0
        log.info("swept %d expired item(s) of %s from DynamoDB table %s", deleted, table_id, table)
        return deleted

    def entity_keys(self, table_id: str) -> Iterator[str]:
        """A parallel scan of the workspace table for ``table_id``'s items (keys only)."""
        table = self.table_name(table_id)
        if not self._table_exists(table):
            return iter(())
        prefix = table_id + "|"

        def keys(items: list[dict[str, Any]]) -> list[str]:
            found = (item[PK]["S"][len(prefix) :] for item in items)
            return [key for key in found if key.startswith("[")]  # not the sync marker

        pages = self._scan(
            table,
            f"listing the keys of {table_id}",
            "begins_with(#pk, :prefix)",
            {},
            {":prefix": {"S": prefix}},
            keys,
        )
        return (key for page in pages for key in page)

    def prepare(self, table_ids: Iterable[str]) -> None:
        """Create each workspace table that does not exist yet and enable DynamoDB TTL on ``exp``."""
        for table in sorted({self.table_name(t) for t in table_ids}):
            self.ensure_table(table)

    def table_items(self, table_id: str) -> dict[str, OnlineValue]:
        """Every row of ``table_id`` by entity key (a full scan: for tests and debugging only)."""
        table = self.table_name(table_id)
        prefix = table_id + "|"
        rows: dict[str, OnlineValue] = {}
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": table,
                "FilterExpression": "begins_with(#pk, :prefix)",
                "ExpressionAttributeNames": {"#pk": PK},
                "ExpressionAttributeValues": {":prefix": {"S": prefix}},
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self._call("scan", f"scanning {table_id}", **kwargs)
            for item in page.get("Items", []):
                key = item[PK]["S"][len(prefix) :]
                if VALUES in item:
                    rows[key] = OnlineValue(int(item[TS]["N"]), orjson.loads(item[VALUES]["S"]))
            start = page.get("LastEvaluatedKey")
            if not start:
                return rows
