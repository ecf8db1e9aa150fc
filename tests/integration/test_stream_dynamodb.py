"""The stream processor on the DynamoDB online store (dynalite): tiles in the entities' items, one
conditional UpdateItem per entity, a state item per shard, exact under redelivery and under
processors of several shards writing the same entities at once."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from aggregation_oracle import aggregate, mismatches
from stream_views import T0, aggregate_view, latest_view, record, us

from featureplane.compute.aggregation.online import OnlineRollup
from featureplane.online_stores.dynamodb import DynamoDBOnlineStore
from featureplane.streams.dynamodb import DynamoDBStreamStore
from featureplane.streams.processor import StreamProcessor

pytestmark = pytest.mark.integration
MINUTE = timedelta(minutes=1)


@pytest.fixture
def online(dynalite, table_prefix):
    store = DynamoDBOnlineStore(region="us-east-1", table_prefix=table_prefix, endpoint_url=dynalite)
    yield store
    store.close()


def processor(online, view, table_id="prod/payment_stats/g1") -> StreamProcessor:
    return StreamProcessor(
        view.spec(), table_id, DynamoDBStreamStore(online), view if view.function else None
    )


def values(proc, user_id, now):
    (row,) = proc.store.online.read([(proc.table_id, (user_id,))])
    _, got = OnlineRollup(proc.view).at(None if row is None else row.values, us(now))
    return dict(zip(proc.view.feature_names, got, strict=True))


def test_tiles_roll_up_like_sqlite_and_a_redelivery_counts_once(online):
    proc = processor(online, aggregate_view())
    events = [("u1", T0 + timedelta(seconds=s), a) for s, a in [(5, 10), (70, 20), (130, 30), (400, 5)]]
    batch = [record("s1", i, u, t, a) for i, (u, t, a) in enumerate(events)]
    assert proc.process(batch[:3]).applied == 3
    assert proc.process(batch).applied == 1  # redelivered from the start
    online._call("delete_item", "state", TableName=online.table_name(proc.table_id),
                 Key={"pk": {"S": proc.table_id + "|#stream|s1"}})  # fmt: skip
    assert proc.process(batch).applied == 4  # checkpoint lost: the tiles still skip what they hold
    now = T0 + timedelta(seconds=401)
    got = values(proc, "u1", now)
    rows = [{"user_id": u, "ts": t, "amount": a} for u, t, a in events]
    expected = {f.name: aggregate(f, rows, "u1", now + MINUTE, MINUTE) for f in proc.view.features}
    assert not mismatches(proc.view.features, expected, got)
    assert got["amount_count_5m"] == 2 and got["amount_sum_15m"] == 65
    tiles = proc.store.tiles(proc.table_id, ("u1",))
    assert sum(t["cols"]["amount"]["n"] for t in tiles.values()) == 4


def test_processors_of_several_shards_writing_the_same_entities_at_once_lose_nothing(online):
    rng = random.Random(7)
    view = aggregate_view(functions=("count", "sum"))
    shards = {f"shard-{s}": [] for s in range(4)}
    for shard, records in shards.items():
        for n in range(60):
            ts = T0 + timedelta(seconds=rng.randint(0, 600))
            records.append(record(shard, n, f"u{rng.randint(0, 2)}", ts, rng.randint(1, 9)))
    errors = []
    conflicts = []

    def run(shard: str) -> None:
        # One processor per shard, as a Lambda per Kinesis shard would be; each keeps its own state.
        proc = processor(online, view, "prod/payment_stats/g1")
        try:
            records = shards[shard]
            for first in range(0, len(records), 7):
                proc.process(records[first : first + 7])
            conflicts.append(proc.store.conflicts)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in shards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(conflicts) > 0  # the processors did write the same entities at the same time
    proc = processor(online, view)
    state = proc.state()  # each shard's processor committed its own state
    assert state.positions == {shard: 59 for shard in shards}
    assert set(state.shards) == set(shards) and state.late == 0
    everything = [r for records in shards.values() for r in records]
    for user in ("u0", "u1", "u2"):
        mine = [r for r in everything if r.data["user_id"] == user]
        tiles = proc.store.tiles(proc.table_id, (user,))
        assert sum(t["cols"]["amount"]["n"] for t in tiles.values()) == len(mine)
        assert sum(t["cols"]["amount"]["sum"] for t in tiles.values()) == sum(r.data["amount"] for r in mine)
        assert {s for t in tiles.values() for s in t["pos"]} <= set(shards)


def test_a_plain_view_keeps_the_latest_row(online):
    proc = processor(online, latest_view(), "prod/last_payment/g1")
    proc.process([record("s1", 1, "u1", T0 + MINUTE, 5, "b"), record("s1", 2, "u1", T0, 9, "a")])
    (row,) = online.read([(proc.table_id, ("u1",))])
    assert (row.event_ts, row.values) == (us(T0 + MINUTE), [5, "b"])
    assert proc.state().positions == {"s1": 2}


def test_each_shard_has_its_own_state_item_and_lateness(online):
    view = aggregate_view(lateness=timedelta(minutes=2))
    first, second = processor(online, view), processor(online, view)
    first.process([record("s1", 1, "u1", T0 + 10 * MINUTE, 1)])
    result = second.process([record("s2", 5, "u1", T0, 2), record("s2", 6, "u1", T0 - 3 * MINUTE, 4)])
    assert (result.applied, result.late) == (1, 1)  # s2's own watermark, not s1's
    state = first.state()
    assert state.positions == {"s1": 1, "s2": 6}
    assert (state.shards["s1"].watermark_us, state.shards["s2"].watermark_us) == (
        us(T0 + 10 * MINUTE),
        us(T0),
    )
    assert (state.watermark_us, state.late) == (us(T0 + 10 * MINUTE), 1)
    table = online.table_name(first.table_id)
    items = online.client.scan(TableName=table)["Items"]
    assert sorted(i["pk"]["S"] for i in items if "#stream" in i["pk"]["S"]) == [
        first.table_id + "|#stream",
        first.table_id + "|#stream|s1",
        first.table_id + "|#stream|s2",
    ]
    tiles = first.store.tiles(first.table_id, ("u1",))
    assert sum(t["cols"]["amount"]["n"] for t in tiles.values()) == 2
