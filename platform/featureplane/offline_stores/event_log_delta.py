"""The event log on the Delta offline store: the stream view's Delta table, partitioned like every
view's (``_partition``, by day or month of the event time), so the daily maintenance job compacts the
small per-batch appends, Z-orders by the join keys and enforces ``offline_retention`` on it as on any
table. The hand-over state is a small JSON file beside the table, changed under a file lock and
replaced atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.delta import PARTITION_COLUMN, DeltaOfflineStore, _duck, with_partition
from featureplane.offline_stores.event_log import (
    BATCH_SHARD,
    PROCESSED_AT,
    SEQUENCE,
    SHARD,
    Handover,
    LoggedEvent,
    StreamEventLog,
    deduped_events_sql,
    event_schema,
    event_time,
    handover_path,
    logged_columns,
    logged_rows,
)
from featureplane.util.locks import file_lock

if TYPE_CHECKING:
    import pyarrow as pa


class DeltaEventLog(StreamEventLog):
    def __init__(self, store: DeltaOfflineStore, table_id: str, view: FeatureViewSpec) -> None:
        self.store = store
        self.table_id = table_id
        self.view = view
        self.path = store.path(table_id)
        self.columns = logged_columns(view)
        self._handover_file = handover_path(self.path)

    def schema(self) -> pa.Schema:
        return event_schema(self.view)

    def _write(self, data: pa.Table, predicate: str | None = None) -> None:
        """One commit: an append (creating the table if needed), or with ``predicate`` a replace of
        the rows it matches."""
        from deltalake import write_deltalake

        if predicate is not None and self.store.version(self.table_id) is None:
            predicate = None  # nothing to replace yet
            mode = "append"
        else:
            mode = "overwrite" if predicate else "append"
        self.path.mkdir(parents=True, exist_ok=True)
        write_deltalake(
            str(self.path),
            with_partition(data, self.view),
            mode=mode,
            predicate=predicate,
            partition_by=[PARTITION_COLUMN],
        )

    def append(self, events: Sequence[LoggedEvent], processed_at_us: int) -> None:
        self.append_batches([(events, processed_at_us)])

    def append_batches(self, batches: Sequence[tuple[Sequence[LoggedEvent], int]]) -> None:
        """All the batches in one commit."""
        import pyarrow as pa

        rows = [row for events, at in batches for row in logged_rows(self.view, self.columns, events, at)]
        if rows:
            self._write(pa.Table.from_pylist(rows, schema=self.schema()))

    def write_backfill(self, start_us: int, end_us: int, rows: pa.Table) -> int:
        import pyarrow as pa

        schema = self.schema()
        n = rows.num_rows
        data = rows.select([f.name for f in schema][:-3]).cast(pa.schema(list(schema)[:-3]))
        data = data.append_column(SHARD, pa.array([BATCH_SHARD] * n, pa.string()))
        data = data.append_column(SEQUENCE, pa.nulls(n, pa.string()))
        data = data.append_column(PROCESSED_AT, pa.nulls(n, pa.timestamp("us")))
        ts = self.view.timestamp_field
        predicate = (
            f"{SHARD} = '{BATCH_SHARD}' AND {ts} >= '{event_time(start_us).isoformat()}' "
            f"AND {ts} < '{event_time(end_us).isoformat()}'"
        )
        self._write(data, predicate)
        return self.store.version(self.table_id)  # type: ignore[return-value]

    def events(self) -> pa.Table:
        con = _duck(self.store.duckdb_settings)
        if self.store.version(self.table_id) is None:
            return self.schema().empty_table().select(self.event_columns())
        con.register("log", self.store._table(self.table_id).to_pyarrow_dataset())
        order = ", ".join(f'"{c}"' for c in [*self.view.join_key_names, self.view.timestamp_field])
        return con.sql(
            f"SELECT * FROM ({deduped_events_sql(self.view, 'log')}) ORDER BY {order}"
        ).to_arrow_table()

    def logged_after(self, positions: dict[str, int]) -> set[tuple[str, int]]:
        """Reads only the identity columns (sequences compare as integers here: they exceed 64 bits)."""
        import pyarrow.compute as pc

        table = self.store._table(self.table_id)
        if table is None:
            return set()
        identities = table.to_pyarrow_dataset().to_table(
            columns=[SHARD, SEQUENCE], filter=pc.field(SEQUENCE).is_valid()
        )
        found = set()
        for shard, sequence in zip(
            identities[SHARD].to_pylist(), identities[SEQUENCE].to_pylist(), strict=True
        ):
            n = int(sequence)
            done = positions.get(shard)
            if done is None or n > done:
                found.add((shard, n))
        return found

    def event_columns(self) -> list[str]:
        return [*self.view.join_key_names, self.view.timestamp_field, *self.columns]

    # -- the hand-over ---------------------------------------------------------------------------

    def handover(self) -> Handover:
        try:
            data = json.loads(self._handover_file.read_text())
        except FileNotFoundError:
            return Handover()
        return Handover(data.get("boundary_us"), data.get("backfilled_through_us"))

    def _save(self, handover: Handover) -> None:
        self._handover_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._handover_file.with_suffix(".tmp")
        temporary.write_text(
            json.dumps(
                {"boundary_us": handover.boundary_us, "backfilled_through_us": handover.backfilled_through_us}
            )
        )
        os.replace(temporary, self._handover_file)

    def _lock(self) -> Path:
        return handover_path(self.path).with_suffix(".lock")

    def claim_boundary(self, proposed_us: int) -> int:
        with file_lock(self._lock()):
            current = self.handover()
            if current.boundary_us is not None:
                return current.boundary_us
            boundary = max(proposed_us, current.backfilled_through_us or proposed_us)
            self._save(Handover(boundary, current.backfilled_through_us))
            return boundary

    def reserve_backfill(self, start_us: int, end_us: int) -> int:
        with file_lock(self._lock()):
            current = self.handover()
            if current.boundary_us is not None:
                return min(end_us, current.boundary_us)
            through = max(end_us, current.backfilled_through_us or end_us)
            self._save(Handover(None, through))
            return end_us
