"""The event log on the Snowflake offline store: the view's table written as a plain table of the
store (``log_table_view``), each batch appended and each backfilled window replaced in one
transaction with a new table version, as every write of that store; the hand-over state is a row of
``<prefix>STREAM_HANDOVER``, changed in a transaction that first locks that table (an UPDATE takes
Snowflake's table lock, so two writers cannot both fix the boundary). Snowflake clusters and prunes
the appends by itself: there is nothing to compact. Training sets over stream views are not built on
this store yet (``docs/streams.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from featureplane.compute.snowflake.client import literal_string, quote
from featureplane.definitions.specs import FeatureViewSpec
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
    log_table_view,
    logged_columns,
    logged_rows,
)
from featureplane.offline_stores.snowflake import SnowflakeOfflineStore

if TYPE_CHECKING:
    import pyarrow as pa


class SnowflakeEventLog(StreamEventLog):
    def __init__(self, store: SnowflakeOfflineStore, table_id: str, view: FeatureViewSpec) -> None:
        self.store = store
        self.table_id = table_id
        self.view = view
        self.table_view = log_table_view(view)
        self.columns = logged_columns(view)

    @property
    def _handover_table(self) -> str:
        return self.store._name(f"{self.store.prefix}STREAM_HANDOVER")

    def append(self, events: Sequence[LoggedEvent], processed_at_us: int) -> None:
        self.append_batches([(events, processed_at_us)])

    def append_batches(self, batches: Sequence[tuple[Sequence[LoggedEvent], int]]) -> None:
        """All the batches in one transaction."""
        import pyarrow as pa

        rows = [row for events, at in batches for row in logged_rows(self.view, self.columns, events, at)]
        if not rows:
            return
        self.store._commit(
            self.table_id,
            self.table_view,
            pa.Table.from_pylist(rows, schema=event_schema(self.view)),
            None,
            {},
        )

    def write_backfill(self, start_us: int, end_us: int, rows: pa.Table) -> int:
        """The window holds backfilled rows only: stream events are never before the boundary."""
        import pyarrow as pa

        n = rows.num_rows
        data = rows.append_column(SHARD, pa.array([BATCH_SHARD] * n, pa.string()))
        data = data.append_column(SEQUENCE, pa.nulls(n, pa.string()))
        data = data.append_column(PROCESSED_AT, pa.nulls(n, pa.timestamp("us")))
        return self.store.write_window(
            self.table_id, self.table_view, event_time(start_us), event_time(end_us), data
        )

    def events(self) -> pa.Table:
        if self.store.version(self.table_id) is None:
            return event_schema(self.view).empty_table().select(self.event_columns())
        relation = self.store.relation(self.table_id)
        order = ", ".join(quote(c) for c in [*self.view.join_key_names, self.view.timestamp_field])
        return self.store.client.fetch_arrow(
            f"SELECT * FROM ({deduped_events_sql(self.view, relation)}) AS e ORDER BY {order}"
        )

    def event_columns(self) -> list[str]:
        return [*self.view.join_key_names, self.view.timestamp_field, *self.columns]

    def logged_after(self, positions: dict[str, int]) -> set[tuple[str, int]]:
        if self.store.version(self.table_id) is None:
            return set()
        rows = self.store.client.fetchall(
            f"SELECT {quote(SHARD)}, {quote(SEQUENCE)} FROM {self.store.relation(self.table_id)} "
            f"WHERE {quote(SEQUENCE)} IS NOT NULL"
        )
        found = set()
        for shard, sequence in rows:
            done = positions.get(shard)
            if done is None or int(sequence) > done:
                found.add((shard, int(sequence)))
        return found

    # -- the hand-over ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        self.store._prepare()
        self.store.client.execute(
            f"CREATE TABLE IF NOT EXISTS {self._handover_table} ({quote('table_id')} VARCHAR, "
            f"{quote('boundary_us')} NUMBER(38,0), {quote('backfilled_through_us')} NUMBER(38,0))"
        )

    def handover(self) -> Handover:
        self._prepare()
        return self._read()

    def _read(self) -> Handover:
        rows = self.store.client.fetchall(
            f"SELECT {quote('boundary_us')}, {quote('backfilled_through_us')} FROM {self._handover_table} "
            f"WHERE {quote('table_id')} = {literal_string(self.table_id)}"
        )
        if not rows:
            return Handover()
        boundary, through = rows[0]
        return Handover(
            None if boundary is None else int(boundary), None if through is None else int(through)
        )

    def _change(self, decide) -> int:
        self._prepare()
        client, this = self.store.client, literal_string(self.table_id)
        with client.transaction():
            client.execute(
                f"UPDATE {self._handover_table} SET {quote('table_id')} = {quote('table_id')} "
                f"WHERE {quote('table_id')} = {this}"
            )
            stored, answer = decide(self._read())  # no DDL inside the transaction
            client.execute(f"DELETE FROM {self._handover_table} WHERE {quote('table_id')} = {this}")
            client.execute(
                f"INSERT INTO {self._handover_table} VALUES ({this}, {_number(stored.boundary_us)}, "
                f"{_number(stored.backfilled_through_us)})"
            )
        return answer

    def claim_boundary(self, proposed_us: int) -> int:
        def decide(current: Handover) -> tuple[Handover, int]:
            if current.boundary_us is not None:
                return current, current.boundary_us
            boundary = max(proposed_us, current.backfilled_through_us or proposed_us)
            return Handover(boundary, current.backfilled_through_us), boundary

        return self._change(decide)

    def reserve_backfill(self, start_us: int, end_us: int) -> int:
        def decide(current: Handover) -> tuple[Handover, int]:
            if current.boundary_us is not None:
                return current, min(end_us, current.boundary_us)
            return Handover(None, max(end_us, current.backfilled_through_us or end_us)), end_us

        return self._change(decide)


def _number(value: int | None) -> str:
    return "NULL" if value is None else str(int(value))
