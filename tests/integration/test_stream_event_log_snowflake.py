"""The stream views' event log on the Snowflake offline store (over the stand-in): applied events
once each despite a crash between the offline append and the online commit, and the backfill from
batch_config stopping at the hand-over boundary."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from snowflake_helpers import snowflake_events_repo

from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.streams.backfill import backfill_stream_view
from featureplane.streams.processor import StreamProcessor, StreamRecord, to_us
from featureplane.streams.runner import open_stream

pytestmark = pytest.mark.integration
DAY = datetime(2024, 1, 2)
VIEWS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Aggregate, Field, Int64, StreamSource, String, Timestamp, stream_feature_view

    payments = StreamSource(name="payments", timestamp_field="ts", batch_config=events,
                            push_schema=[Field("user_id", String), Field("ts", Timestamp),
                                         Field("amount", Int64), Field("merchant", String)])

    @stream_feature_view(source=payments, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate(Field("amount", Int64), "sum", timedelta(hours=1))],
                         online=True, offline=True, allowed_lateness=timedelta(hours=1),
                         feature_start_time=datetime(2024, 1, 1))
    def payment_sums(record):
        return record
"""
HISTORY = (
    "SELECT * FROM (VALUES ('u1', TIMESTAMP '2024-01-01 23:40:00', 1, 'm1'), "
    "('u1', TIMESTAMP '2024-01-01 23:50:00', 2, 'm1'), ('u1', TIMESTAMP '2024-01-02 00:10:00', 4, 'm1')) "
    "AS t(user_id, ts, amount, merchant)"
)


class Crash(BaseException):
    pass


def test_the_event_log_on_snowflake_counts_once_and_hands_over_at_the_boundary(tmp_path, snowflake_server):
    repo = snowflake_events_repo(tmp_path / "repo", snowflake_server, VIEWS, {"raw.events": HISTORY})
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        state = runtime.registry.load("prod")
        result = backfill_stream_view(runtime, state, "payment_sums", datetime(2024, 1, 1), DAY)
        assert (result.written_until, result.events) == (DAY, 2)

        processor, _ = open_stream(runtime, "prod", "payment_sums")
        assert type(processor.event_log).__name__ == "SnowflakeEventLog"
        records = [
            StreamRecord("shard-1", n, {"user_id": "u1", "ts": t, "amount": a, "merchant": "m1"})
            for n, (t, a) in enumerate(
                [("2024-01-01T23:50:00", 2), ("2024-01-02T00:10:00", 4), ("2024-01-02T00:20:00", 8)], start=1
            )
        ]
        store = processor.store

        class Dying:
            def __getattr__(self, name):
                return getattr(store, name)

            def commit_tiles(self, *args, **kwargs):
                raise Crash()

        processor.store = Dying()
        with pytest.raises(Crash):
            processor.process(records[:2])  # logged offline, then the process dies
        restarted = StreamProcessor(
            processor.view, processor.table_id, store, processor.transform, event_log=processor.event_log
        )
        batch = restarted.process(records)
        assert (batch.applied, batch.late) == (2, 1)  # 23:50 is the backfill's
        assert restarted.event_log.handover().boundary_us == to_us(DAY, "boundary")
        logged = restarted.event_log.events()
        assert sorted(zip(logged["ts"].to_pylist(), logged["amount"].to_pylist(), strict=True)) == [
            (datetime(2024, 1, 1, 23, 40), 1),
            (datetime(2024, 1, 1, 23, 50), 2),
            (DAY + timedelta(minutes=10), 4),
            (DAY + timedelta(minutes=20), 8),
        ]
        later = backfill_stream_view(runtime, state, "payment_sums", DAY, DAY + timedelta(days=1))
        assert (later.written_until, later.events) == (DAY, 0)
        tiles = store.tiles(restarted.table_id, ("u1",))
        assert sum(t["cols"]["amount"]["sum"] for t in tiles.values()) == 1 + 2 + 4 + 8
