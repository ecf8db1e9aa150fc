"""The batch backfill of a stream view and its hand-over to the stream: history from batch_config
before the boundary, the stream's events from it on, nothing counted twice or missed at the boundary,
online and in training sets, whichever side starts first."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
from helpers import events_repo

from featureplane.compute.aggregation.online import OnlineRollup
from featureplane.errors import FeatureplaneError
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.retrieval.workspace import Workspace
from featureplane.streams.backfill import backfill_stream_view
from featureplane.streams.processor import StreamRecord, to_us
from featureplane.streams.runner import open_stream

DAY = datetime(2024, 1, 2)  # the hand-over, when the backfill of 2024-01-01 comes first
VIEWS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import (Aggregate, Attribute, Field, Int64, StreamFeatureView, StreamSource, String,
                              Timestamp, stream_feature_view)

    payments = StreamSource(name="payments", timestamp_field="ts", batch_config=events,
                            push_schema=[Field("user_id", String), Field("ts", Timestamp),
                                         Field("amount", Int64), Field("merchant", String)])

    @stream_feature_view(source=payments, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate(Field("amount", Int64), "count", timedelta(hours=1)),
                                   Aggregate(Field("amount", Int64), "sum", timedelta(hours=1)),
                                   Aggregate(Field("amount", Int64), "sum", timedelta(minutes=10))],
                         online=True, offline=True, allowed_lateness=timedelta(hours=1),
                         feature_start_time=datetime(2024, 1, 1))
    def payment_sums(record):
        if record["merchant"] == "test":
            return None
        return record

    last_payment = StreamFeatureView(name="last_payment", source=payments, entities=[user],
                                     features=[Attribute("amount", Int64)], online=True, offline=True,
                                     feature_start_time=datetime(2024, 1, 1))
"""
# The batch history runs past the boundary: the stream holds the same events from 23:40 on.
HISTORY = (
    [("u1", "2024-01-01 22:55:00", 1)]
    + [("u1", f"2024-01-01 23:{m:02d}:00", m) for m in range(40, 60, 5)]
    + [("u1", "2024-01-02 00:05:00", 100), ("u1", "2024-01-01 23:58:00", 7, "test")]
)
STREAM = [(u, t, a) for u, t, a in HISTORY[1:-2]] + [
    ("u1", "2024-01-02 00:05:00", 100),
    ("u1", "2024-01-02 00:12:00", 200),
]


def table_sql(rows) -> str:
    values = ", ".join(
        f"('{r[0]}', TIMESTAMP '{r[1]}', {r[2]}, '{r[3] if len(r) > 3 else 'm1'}')" for r in rows
    )
    return f"SELECT * FROM (VALUES {values}) AS t(user_id, ts, amount, merchant)"


@pytest.fixture
def repo(tmp_path):
    repo = events_repo(tmp_path / "repo", VIEWS, tables={"raw.events": table_sql(HISTORY)})
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
    return repo


def stream(runtime, view: str):
    processor, _ = open_stream(runtime, "prod", view)
    records = [
        StreamRecord("shard-1", n, {"user_id": u, "ts": t, "amount": a, "merchant": "m1"})
        for n, (u, t, a) in enumerate(STREAM, start=1)
    ]
    return processor, processor.process(records)


def online(runtime, processor, at: datetime) -> dict:
    (row,) = runtime.online_store.read([(processor.table_id, ("u1",))])
    _, values = OnlineRollup(processor.view).at(row.values, to_us(at, "at"))
    return dict(zip(processor.view.feature_names, values, strict=True))


def training(runtime, view: str, times: list[datetime]) -> pd.DataFrame:
    spine = pd.DataFrame({"user_id": ["u1"] * len(times), "ts": times})
    workspace = Workspace(runtime, runtime.registry.load("prod"))
    return workspace.get_feature_view(view).get_historical_features(spine, "ts")


def expected(at: datetime, window: timedelta) -> tuple[int, int]:
    """Count and sum of every distinct event (history and stream) in the window ending at ``at``."""
    events = {(t, a) for _, t, a in [*HISTORY[:-1], *STREAM]}
    start = (at + timedelta(minutes=1)).replace(second=0) - window
    kept = [a for t, a in events if start <= datetime.fromisoformat(t) <= at]
    return len(kept), sum(kept)


TIMES = [DAY - timedelta(minutes=1), DAY, DAY + timedelta(minutes=5), DAY + timedelta(minutes=30)]


def test_backfill_first_then_stream_counts_each_event_once_across_the_boundary(repo):
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        result = backfill_stream_view(runtime, state, "payment_sums", datetime(2024, 1, 1), DAY)
        assert (result.written_until, result.events, result.dropped) == (DAY, 5, 1)
        processor, batch = stream(runtime, "payment_sums")
        assert (batch.applied, batch.late) == (2, 4)  # 23:40 .. 23:55 are the backfill's
        assert all("before the hand-over" in p for p in batch.problems)
        later = backfill_stream_view(runtime, state, "payment_sums", DAY, DAY + timedelta(days=1))
        assert (later.written_until, later.events) == (DAY, 0)  # the stream owns it
        frame = training(runtime, "payment_sums", TIMES)
        for i, at in enumerate(TIMES):
            count, total = expected(at, timedelta(hours=1))
            assert frame["payment_sums__amount_count_1h"][i] == count, at
            assert frame["payment_sums__amount_sum_1h"][i] == total, at
            assert frame["payment_sums__amount_sum_10m"][i] == expected(at, timedelta(minutes=10))[1], at
        at = TIMES[-1]  # online: the backfilled tiles before the boundary, the stream's after it
        assert online(runtime, processor, at) == {
            "amount_count_1h": expected(at, timedelta(hours=1))[0],
            "amount_sum_1h": expected(at, timedelta(hours=1))[1],
            "amount_sum_10m": expected(at, timedelta(minutes=10))[1],
        }
        logged = processor.event_log.events()
        assert sorted(logged["amount"].to_pylist()) == sorted({a for _, _, a in [*HISTORY[:-2], *STREAM]})
        again = backfill_stream_view(runtime, state, "payment_sums", datetime(2024, 1, 1), DAY)
        assert again.events == 5
        assert online(runtime, processor, at)["amount_sum_1h"] == expected(at, timedelta(hours=1))[1]
        assert training(runtime, "payment_sums", TIMES).equals(frame)  # a rerun replaces its window


def test_stream_first_then_backfill_stops_at_the_streams_boundary(repo):
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        processor, batch = stream(runtime, "payment_sums")
        assert (batch.applied, batch.late) == (len(STREAM), 0)
        boundary = datetime(2024, 1, 1, 22, 40)  # the first event, 23:40, minus an hour of lateness
        assert processor.event_log.handover().boundary_us == to_us(boundary, "boundary")
        result = backfill_stream_view(runtime, state, "payment_sums", datetime(2024, 1, 1), DAY)
        assert (result.written_until, result.events) == (boundary, 0)
        frame = training(runtime, "payment_sums", TIMES)
        for i, at in enumerate(TIMES):
            assert frame["payment_sums__amount_sum_1h"][i] == expected(at, timedelta(hours=1))[1], at
            assert online(runtime, processor, at)["amount_sum_1h"] == expected(at, timedelta(hours=1))[1], at
        # 22:55 is after the boundary and the stream never delivered it: the gap a stream started
        # before the first backfill leaves (offline_stores.event_log).
        assert 1 not in processor.event_log.events()["amount"].to_pylist()


def test_a_plain_views_backfill_gives_the_latest_row_before_the_stream_takes_over(repo):
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        backfill_stream_view(runtime, state, "last_payment", datetime(2024, 1, 1), DAY)
        processor, batch = stream(runtime, "last_payment")
        assert batch.applied == 2
        frame = training(runtime, "last_payment", [DAY - timedelta(minutes=1), DAY + timedelta(minutes=6)])
        assert frame["last_payment__amount"].tolist() == [7, 100]  # the "test" row is not dropped here
        (row,) = runtime.online_store.read([(processor.table_id, ("u1",))])
        assert row.values == [200]


def test_an_invalid_history_row_fails_the_window_and_writes_nothing(tmp_path):
    rows = (
        "('u1', TIMESTAMP '2024-01-01 10:00:00', 1, 'm1'), (NULL, TIMESTAMP '2024-01-01 11:00:00', 2, 'm1')"
    )
    table = f"SELECT * FROM (VALUES {rows}) AS t(user_id, ts, amount, merchant)"
    repo = events_repo(tmp_path / "repo", VIEWS, tables={"raw.events": table})
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        state = runtime.registry.load("prod")
        with pytest.raises(
            FeatureplaneError, match=r"'events': row 1 .*no join key 'user_id'.*nothing was written"
        ):
            backfill_stream_view(runtime, state, "payment_sums", datetime(2024, 1, 1), DAY)
        assert runtime.offline_store.version(state.table_id("payment_sums")) is None


def test_a_stream_view_is_a_partitioned_dagster_asset_whose_runs_backfill_it(repo):
    import dagster as dg

    from dagster_project.definitions import build_definitions

    defs = build_definitions(repo.config())
    asset = defs.resolve_assets_def(dg.AssetKey(["prod", "payment_sums"]))
    assert asset.partitions_def is not None and "2024-01-01" in asset.partitions_def.get_partition_keys()
    deps = {k.to_user_string() for k in asset.asset_deps[dg.AssetKey(["prod", "payment_sums"])]}
    assert any("events" in d for d in deps)  # the batch_config is upstream
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [asset],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2024-01-01",
            "dagster/asset_partition_range_end": "2024-01-02",
        },
    )
    assert result.success
    events = result.get_asset_materialization_events()
    assert len(events) == 2  # one run, both partitions
    metadata = events[0].materialization.metadata
    assert metadata["events"].value == 6 and metadata["written_until"].value == "2024-01-03T00:00:00"
    with repo.runtime() as runtime:
        processor, batch = stream(runtime, "payment_sums")
        assert batch.applied == 0 and batch.late == len(STREAM)  # all inside the backfilled history
        assert sorted(processor.event_log.events()["amount"].to_pylist()) == [1, 40, 45, 50, 55, 100]
    # `featureplane status` shows the backfilled history of the view like a batch view's partitions
    from dagster_project.status import collect_status

    views = {v.view: v for v in collect_status(repo.config(), "prod", instance).views}
    assert (views["payment_sums"].last_partition, views["payment_sums"].materialized_partitions) == (
        "2024-01-02",
        2,
    )
    assert views["payment_sums"].checks == [] and views["last_payment"].last_partition is None


def test_delete_keys_removes_a_keys_events_from_the_event_log(repo):
    from featureplane.materialization.deletion import delete_keys, keys_from

    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        backfill_stream_view(runtime, state, "payment_sums", datetime(2024, 1, 1), DAY)
        processor, _ = stream(runtime, "payment_sums")
        report = delete_keys(
            runtime, state, "payment_sums", keys_from(state.feature_view("payment_sums"), ["u1"])
        )
        assert report.offline.rows == 7  # five backfilled events, two from the stream
        assert processor.event_log.events().num_rows == 0
        assert training(runtime, "payment_sums", TIMES)["payment_sums__amount_count_1h"].tolist() == [0] * 4


def test_the_maintenance_job_compacts_a_stream_views_event_log(repo):
    from featureplane.materialization.maintenance import MaintenanceOptions, maintain_workspace

    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        backfill_stream_view(runtime, state, "payment_sums", datetime(2024, 1, 1), DAY)
        processor, _ = stream(runtime, "payment_sums")
        processor.process(
            [
                StreamRecord(
                    "shard-1",
                    99,
                    {"user_id": "u2", "ts": "2024-01-02 00:20:00", "amount": 3, "merchant": "m1"},
                )
            ]
        )
        before = processor.event_log.events()
        reports = {
            r.view: r
            for r in maintain_workspace(runtime, state, MaintenanceOptions(vacuum_retention_hours=0))
        }
        report = reports["payment_sums"]
        assert report.files_before == 3 and report.files_after == 1
        assert processor.event_log.events().equals(before)


def test_a_range_is_backfilled_a_partition_at_a_time_and_a_partition_rerun_counts_nothing_twice(tmp_path):
    rows = [
        ("u1", "2024-01-01 23:50:00", 1),
        ("u1", "2024-01-02 23:30:00", 2),
        ("u1", "2024-01-02 23:45:00", 3),
    ]
    repo = events_repo(tmp_path / "repo", VIEWS, tables={"raw.events": table_sql(rows)})
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        state = runtime.registry.load("prod")
        steps: list[str] = []
        end = DAY + timedelta(days=1)
        result = backfill_stream_view(runtime, state, "payment_sums", datetime(2024, 1, 1), end, steps.append)
        assert (result.events, result.online_events) == (3, 2)  # online: the last hour only
        assert len(steps) == 2 and "[2024-01-02 00:00:00, 2024-01-03 00:00:00): 2 event(s)" in steps[1]
        processor, _ = open_stream(runtime, "prod", "payment_sums")

        def counted() -> int:
            return sum(
                t["cols"]["amount"]["n"] for t in processor.store.tiles(processor.table_id, ("u1",)).values()
            )

        assert counted() == 2
        again = backfill_stream_view(runtime, state, "payment_sums", DAY, end)  # the last partition alone
        assert (again.events, counted()) == (2, 2)  # the same identities: nothing counted twice
        logged = processor.event_log.events()
        assert sorted(logged["amount"].to_pylist()) == [1, 2, 3]
