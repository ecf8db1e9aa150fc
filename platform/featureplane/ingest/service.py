"""One ingest request: check every record, append them durably for the offline store, then update the
online store where a record is newer than what it holds.

The order matters: the log append comes first and returns only once the records are on disk, so an
acknowledged record is never missing offline; the online write comes second, so the online store never
holds a record the offline store could lose. A request that fails after the append can be retried: the
online write is an upsert that keeps the newest event, and a retried request's offline rows are
identical copies, which point-in-time joins read the same way. A request that is never retried, or
whose server died between the two writes, is still applied to both stores: its log segment is left
without an online marker, and ``featureplane.ingest.replay`` writes it online.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from featureplane.errors import MAX_RECORD_BYTES, describe_value
from featureplane.ingest.log import IngestLog, Segment
from featureplane.ingest.records import IngestEndpoint, IngestTarget, RecordError, parse_records, timestamp_us
from featureplane.online_stores.base import OnlineRow, OnlineStore

log = logging.getLogger("featureplane.ingest")


class IngestUnavailable(RuntimeError):
    """A store failed; the request may be retried."""


class TooManyRecords(ValueError):
    pass


@dataclass
class TargetCounts:
    view: str
    online: int = 0
    offline: int = 0
    records: int = 0


@dataclass
class IngestResult:
    workspace: str
    dry_run: bool
    counts: dict[str, TargetCounts] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        """Tecton's ingest response: counts per feature view (int64 values as strings)."""
        return {
            "workspaceName": self.workspace,
            "dryRun": self.dry_run,
            "ingestMetrics": {
                "featureViewIngestMetrics": [
                    {
                        "featureViewName": c.view,
                        "recordCount": str(c.records),
                        "onlineRecordIngestCount": str(c.online),
                        "offlineRecordIngestCount": str(c.offline),
                    }
                    for c in self.counts.values()
                ]
            },
        }


Timer = Callable[[str, float], None]


class Ingestor:
    def __init__(
        self,
        online_store: OnlineStore,
        ingest_log: IngestLog | None,
        *,
        max_records: int = 10_000,
        on_store_call: Timer | None = None,
    ) -> None:
        self.online_store = online_store
        self.log = ingest_log
        self.max_records = max_records
        self.on_store_call = on_store_call

    def ingest(
        self,
        workspace: str,
        endpoints: Mapping[str, IngestEndpoint],
        records: Any,
        dry_run: bool = False,
        body_bytes: int | None = None,
    ) -> IngestResult:
        """Raise RecordError (nothing written) for any bad record, TooManyRecords above the limit,
        IngestUnavailable when a store fails. ``body_bytes``, the size of the request the records came
        in, spares measuring each record when the whole request is within a record's limit."""
        if not isinstance(records, dict) or not records:
            raise RecordError(
                'records must be an object of push source or feature table names to lists of {"record": {...}}'
            )
        total = sum(len(items) for items in records.values() if isinstance(items, list))
        if total > self.max_records:
            raise TooManyRecords(
                f"the request has {total} records; the limit is {self.max_records} per request"
            )
        rows: dict[str, tuple[IngestTarget, list[OnlineRow]]] = {}
        for name, items in records.items():
            endpoint = endpoints.get(name)
            if endpoint is None:
                known = ", ".join(sorted(endpoints)) or "none"
                raise RecordError(
                    f"records: {describe_value(name)} is not a push source or feature table of workspace "
                    f"{workspace!r} (known: {known})"
                )
            measure = body_bytes is None or body_bytes > MAX_RECORD_BYTES
            parsed = parse_records(endpoint, items, f"records.{name}", measure)
            for target in endpoint.targets:
                out = rows.setdefault(target.table_id, (target, []))[1]
                for record in parsed:
                    out.append(
                        OnlineRow(
                            tuple(record[k] for k in target.join_keys),
                            timestamp_us(record[target.timestamp_field]),
                            [record[f] for f in target.features],
                        )
                    )
        result = IngestResult(workspace, dry_run)
        for target, target_rows in rows.values():
            result.counts[target.table_id] = TargetCounts(target.view, records=len(target_rows))
        if dry_run:
            return result
        segment = self._append_offline(workspace, rows, result)
        online = False
        try:
            self._write_online(rows, result)
            online = True
        finally:
            if segment is not None and self.log is not None:
                self.log.finished(segment, online)
        return result

    def _append_offline(
        self, workspace: str, rows: dict[str, tuple[IngestTarget, list[OnlineRow]]], result: IngestResult
    ) -> Segment | None:
        if not any(target.offline and target_rows for target, target_rows in rows.values()):
            return None
        # Rows of online-only tables go in too, for a replay to apply the whole request; folds into
        # the offline store read only the offline tables' rows.
        entry = {
            table_id: [[*row.key, row.event_ts, *row.values] for row in target_rows]
            for table_id, (target, target_rows) in rows.items()
            if target_rows
        }
        if self.log is None:
            raise IngestUnavailable(
                "this server keeps no durable ingest log for the offline store: set offline_store.ingest_log "
                "to a durable directory (on AWS Lambda, an EFS mount) or send records for offline tables "
                "to a server that has one"
            )
        try:
            segment = self.log.append(workspace, entry)
        except OSError as exc:
            log.exception("appending to the ingest log failed")
            raise IngestUnavailable(f"could not append the records to the ingest log: {exc}") from None
        for table_id, (target, target_rows) in rows.items():
            if target.offline:
                result.counts[table_id].offline = len(target_rows)
        return segment

    def _write_online(
        self, rows: dict[str, tuple[IngestTarget, list[OnlineRow]]], result: IngestResult
    ) -> None:
        for table_id, (target, target_rows) in rows.items():
            if not target.online or not target_rows:
                continue
            latest: dict[tuple, OnlineRow] = {}
            for row in target_rows:  # the newest record per entity; on a tie, the later one
                held = latest.get(row.key)
                if held is None or row.event_ts >= held.event_ts:
                    latest[row.key] = row
            try:
                written = self._timed_write(table_id, list(latest.values()), target.ttl_seconds)
            except Exception as exc:
                log.exception("online store write for %s failed", table_id)
                raise IngestUnavailable(
                    f"the online store write for feature table {target.view!r} failed ({exc}); the records "
                    "are durable for the offline store, retry the request to update the online store"
                ) from None
            result.counts[table_id].online = written

    def _timed_write(self, table_id: str, rows: list[OnlineRow], ttl_seconds: int | None = None) -> int:
        import time

        started = time.perf_counter()
        written = self.online_store.write(table_id, rows, only_if_newer=True, ttl_seconds=ttl_seconds)
        if self.on_store_call is not None:
            self.on_store_call("write", time.perf_counter() - started)
        return written
