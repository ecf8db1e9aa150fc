"""Training sets and ranges of stream feature views on the Snowflake path (the stand-in, fakesnow,
behind the real connector) equal those of the DuckDB + Delta path for the same repository and events.

Both sides backfill the history from ``batch_config`` and process the same stream records (some
logged twice: a crash between the offline append and the online commit), so each event log holds
batch rows and duplicated stream identities. Every aggregation function a stream view supports, in
continuous and time_interval mode, a plain stream view and a batch aggregate view share one feature
service; the spine has rows on tile boundaries, at events' exact times, just before them, and an
entity without events.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pandas as pd
import pytest
from helpers import events_repo, floats_close, rows_sql
from snowflake_helpers import not_snowflake_sql, snowflake_events_repo

from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.retrieval.workspace import Workspace
from featureplane.streams.backfill import backfill_stream_view
from featureplane.streams.processor import StreamProcessor, StreamRecord
from featureplane.streams.runner import open_stream

pytestmark = pytest.mark.integration

DAY = datetime(2024, 1, 2)  # the hand-over: history before it, the stream from it on
USERS = ["u0", "u1", "u2", "u3"]
STREAM_VIEWS = ("live_stats", "interval_stats", "last_payment")
FUNCTIONS = [
    '"count"', '"sum"', '"mean"', '"min"', '"max"', '"stddev_samp"', '"stddev_pop"', '"first"', '"last"',
    "last_n(2)",
]  # fmt: skip
RTOL = 1e-12  # float sums and squared deviations: the engines add in orders neither promises


def aggregates(window: str) -> str:
    amount = "".join(f'Aggregate(Field("amount", Int64), {f}, {window}), ' for f in FUNCTIONS)
    return amount + f'Aggregate(Field("merchant", String), "count_distinct", {window}), '


VIEWS = f"""
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import (Aggregate, Attribute, FeatureService, Field, Int64, StreamSource, String,
                              Timestamp, batch_feature_view, last_n, stream_feature_view)

    payments = StreamSource(name="payments", timestamp_field="ts", batch_config=events,
                            push_schema=[Field("user_id", String), Field("ts", Timestamp),
                                         Field("amount", Int64), Field("merchant", String)])
    SHORT, LONG = timedelta(minutes=3), timedelta(minutes=10)

    @stream_feature_view(source=payments, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[{aggregates("SHORT")}{aggregates("LONG")}],
                         stream_processing_mode="continuous", online=True, offline=True,
                         allowed_lateness=timedelta(days=1), feature_start_time=datetime(2024, 1, 1))
    def live_stats(record):
        return record

    @stream_feature_view(source=payments, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[{aggregates("SHORT")}{aggregates("LONG")}],
                         stream_processing_mode="time_interval", online=True, offline=True,
                         allowed_lateness=timedelta(days=1), feature_start_time=datetime(2024, 1, 1))
    def interval_stats(record):
        return record

    @stream_feature_view(source=payments, entities=[user], online=True, offline=True,
                         features=[Attribute("amount", Int64), Attribute("merchant", String)],
                         ttl=timedelta(minutes=20), allowed_lateness=timedelta(days=1),
                         feature_start_time=datetime(2024, 1, 1))
    def last_payment(record):
        return record

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
                        aggregation_interval=timedelta(hours=1), batch_schedule=timedelta(days=1),
                        feature_start_time=datetime(2024, 1, 1), online=True,
                        features=[Aggregate(Field("amount", Int64), "sum", timedelta(days=1))])
    def daily_amounts(events):
        return f"SELECT user_id, ts, amount FROM {{events}}"

    fraud = FeatureService(name="fraud", features=[live_stats, interval_stats, last_payment, daily_amounts])
"""
COLUMNS = {"user_id": "VARCHAR", "ts": "TIMESTAMP", "amount": "BIGINT", "merchant": "VARCHAR"}


def history() -> list[dict]:
    """The day before the hand-over, denser in its last half hour (windows reach across it); some
    amounts and merchants are null."""
    rng = random.Random(3)
    rows = []
    for i in range(80):
        late = i % 2 == 0
        at = DAY - timedelta(seconds=rng.randrange(1, 30 * 60 if late else 86_400))
        rows.append(
            {
                "user_id": rng.choice(USERS),
                "ts": at.replace(microsecond=0),
                "amount": None if i % 13 == 0 else rng.randrange(-50, 500),
                "merchant": None if i % 11 == 0 else f"m{rng.randrange(4)}",
            }
        )
    return rows


def stream_records() -> list[StreamRecord]:
    """Records of two shards over 40 minutes after the hand-over, out of order within a shard, some
    on exact minutes (tile boundaries) and some sharing a time."""
    rng = random.Random(7)
    records = []
    for n in range(120):
        at = DAY + timedelta(seconds=rng.randrange(0, 40 * 60))
        if n % 10 == 0:
            at = at.replace(second=0)
        if n % 17 == 0 and records:
            at = datetime.fromisoformat(records[-1].data["ts"])
        data = {
            "user_id": rng.choice(USERS),
            "ts": at.isoformat(),
            "amount": rng.randrange(1, 1000),
            "merchant": f"m{rng.randrange(5)}",
        }
        records.append(StreamRecord(f"shard-{n % 2}", n, data))
    return records


def spine() -> pd.DataFrame:
    rng = random.Random(5)
    times = [
        DAY + timedelta(seconds=rng.randrange(-40 * 60, 55 * 60), microseconds=rng.randrange(3))
        for _ in range(40)
    ]
    times += [DAY, DAY + timedelta(minutes=10), DAY + timedelta(minutes=25), DAY - timedelta(minutes=3)]
    events = [datetime.fromisoformat(r.data["ts"]) for r in stream_records()[::9]]
    times += events + [t - timedelta(microseconds=1) for t in events]  # at an event, and just before it
    rows = [(u, t) for u in [*USERS, "nobody"] for t in times]
    return pd.DataFrame(rows, columns=["user_id", "ts"]).sample(frac=1.0, random_state=2)


def plain(value):
    """A training or range value as a comparable Python value (arrays as lists, missing as None)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list | tuple | str):
        return list(value) if not isinstance(value, str) else value
    return None if value is None or value is pd.NA or value != value else value


def logged(records: list[StreamRecord]) -> list[tuple[str, datetime]]:
    return [(r.data["user_id"], datetime.fromisoformat(r.data["ts"])) for r in records]


def assert_counts(training: pd.DataFrame, events: list[tuple[str, datetime]]) -> None:
    """The 10-minute counts are those of ``events`` (each once, none with a null amount) in each
    mode's windows: continuous up to the spine time itself, time_interval up to the start of its
    interval."""
    minute = timedelta(minutes=1)
    for row in training.itertuples():
        t = row.ts.to_pydatetime()
        index = (t - DAY) // minute
        mine = [(e - DAY) // minute for u, e in events if u == row.user_id and e <= t]
        assert row.live_stats__amount_count_10m == sum(i > index - 10 for i in mine), row
        assert row.interval_stats__amount_count_10m == sum(index - 10 <= i < index for i in mine), row


class Crash(BaseException):
    pass


class Side:
    def __init__(self, repo, *, events: bool = True) -> None:
        self.runtime = repo.runtime()
        self.runtime.registry.create_workspace("prod", live=True)
        apply_plan(self.runtime, plan_repository(self.runtime, "prod"))
        self.state = self.runtime.registry.load("prod")
        self.workspace = Workspace(self.runtime, self.state)
        materialize(
            self.runtime, self.state, "daily_amounts", DAY - timedelta(days=1), DAY + timedelta(days=1)
        )
        for name in STREAM_VIEWS if events else ():
            backfill_stream_view(self.runtime, self.state, name, DAY - timedelta(days=1), DAY)
            self.process(name, stream_records(), crash_after=30)

    def process(self, name: str, records: list[StreamRecord], crash_after: int = 0) -> None:
        """Apply ``records``; with ``crash_after``, the first ones are logged offline by a processor
        that dies before committing them online, so the restarted one logs them again."""
        processor, _ = open_stream(self.runtime, "prod", name)
        if crash_after:
            store = processor.store

            class Dying:
                def __getattr__(self, attribute):
                    return getattr(store, attribute)

                def commit_tiles(self, *args, **kwargs):
                    raise Crash()

                commit_rows = commit_tiles

            processor.store = Dying()
            with pytest.raises(Crash):
                processor.process(records[:crash_after])
            processor = StreamProcessor(
                processor.view, processor.table_id, store, processor.transform, event_log=processor.event_log
            )
        batch = processor.process(records)
        assert batch.late == 0

    def training(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.workspace.get_feature_service("fraud").get_historical_features(frame, "ts")


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory, snowflake_server):
    tables = {"raw.events": rows_sql(COLUMNS, history())}
    duck = Side(events_repo(tmp_path_factory.mktemp("duck"), VIEWS, tables=tables))
    snow = Side(snowflake_events_repo(tmp_path_factory.mktemp("snow"), snowflake_server, VIEWS, tables))
    yield duck, snow
    duck.runtime.close()
    snow.runtime.close()


def test_stream_training_sets_are_identical_on_duckdb_and_snowflake(sides):
    duck, snow = sides
    assert type(snow.runtime.offline_store).__name__ == "SnowflakeOfflineStore"
    expected, actual = duck.training(spine()), snow.training(spine())
    pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=RTOL)
    # The comparison means something: values move, counts see the stream and the history, the
    # duplicated records count once, the entity without events gets the empty windows' values.
    counts = expected.set_index(["user_id", "ts"])["live_stats__amount_count_10m"]
    assert counts.nunique() > 5
    assert (expected.loc[expected.user_id == "nobody", "live_stats__amount_count_10m"] == 0).all()
    assert expected.loc[expected.user_id == "nobody", "live_stats__amount_mean_10m"].isna().all()
    events = [(r["user_id"], r["ts"]) for r in history() if r["amount"] is not None]
    assert_counts(expected, events + logged(stream_records()))
    for column in [
        "last_payment__amount",
        "daily_amounts__amount_sum_1d",
        "interval_stats__amount_last_n_2_3m",
    ]:
        assert expected[column].astype(str).nunique() > 3, column


def test_every_stream_statement_sent_is_snowflake_sql(sides):
    """The stand-in would also run DuckDB's spellings and ignores the case of names."""
    import sqlglot

    _, snow = sides
    snow.training(spine().head(20))
    snow.workspace.get_feature_view("live_stats").get_features_in_range(DAY, DAY + timedelta(minutes=20))
    sent = [
        sql
        for sql in snow.runtime.offline_store.client.history
        if "__fp_at_us" in sql and (sql.startswith("CREATE TEMPORARY TABLE") or "_valid_from" in sql)
    ]  # the stream steps and ranges (the training join is the batch views' and checked with them)
    assert len(sent) >= 10
    for sql in dict.fromkeys(sent):
        assert not_snowflake_sql(sql) == [], sql
        sqlglot.parse_one(sql, read="snowflake")


@pytest.mark.parametrize("name", STREAM_VIEWS)
def test_stream_feature_ranges_are_identical_on_duckdb_and_snowflake(sides, name):
    duck, snow = sides
    window = (DAY - timedelta(minutes=7, seconds=30), DAY + timedelta(minutes=33))
    expected = duck.workspace.get_feature_view(name).get_features_in_range(*window)
    actual = snow.workspace.get_feature_view(name).get_features_in_range(*window)
    assert len(expected) > 40
    pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=RTOL)


def test_an_event_after_the_spine_time_never_counts(tmp_path, snowflake_server):
    """On both paths, with an event a microsecond after every spine time of every entity (and so
    before the later ones), each row counts exactly the events at or before its time, and its latest
    row is never a later one."""
    tables = {"raw.events": rows_sql(COLUMNS, history())}
    frame = spine()
    after = sorted({t for t in frame.ts if t >= DAY})
    later = [
        StreamRecord("shard-9", n, {"user_id": u, "ts": (t + timedelta(microseconds=1)).isoformat(),
                                    "amount": 10_000 + n, "merchant": "late"})
        for n, (u, t) in enumerate((u, t) for t in after for u in USERS)
    ]  # fmt: skip
    events = [(r["user_id"], r["ts"]) for r in history() if r["amount"] is not None]
    events += logged(stream_records()) + logged(later)
    for side in (
        Side(events_repo(tmp_path / "duck", VIEWS, tables=tables)),
        Side(snowflake_events_repo(tmp_path / "snow", snowflake_server, VIEWS, tables)),
    ):
        try:
            before = side.training(frame)
            for name in STREAM_VIEWS:
                side.process(name, later)
            training = side.training(frame)
            assert_counts(training, events)
            assert (training.live_stats__amount_count_10m >= before.live_stats__amount_count_10m).all()
            assert (training.live_stats__amount_count_10m > before.live_stats__amount_count_10m).sum() > 100
            late = training[training.last_payment__merchant == "late"]
            assert len(late) > 50
            for row in late.itertuples():  # the amount says which later event it is
                made = datetime.fromisoformat(later[int(row.last_payment__amount) - 10_000].data["ts"])
                assert made <= row.ts.to_pydatetime(), row
        finally:
            side.runtime.close()


@pytest.mark.parametrize("name", STREAM_VIEWS)
def test_a_stream_views_range_holds_the_training_value_at_every_time_in_it(sides, name):
    """``get_features_in_range`` means what it means for batch views: the value of the range holding
    ``t`` is the training value at ``t`` (no range: the value of an empty window, or none)."""
    duck, _ = sides
    view = duck.workspace.get_feature_view(name)
    window = (DAY - timedelta(minutes=7, seconds=30), DAY + timedelta(minutes=33))
    ranges = view.get_features_in_range(*window)
    rng = random.Random(17)
    times = [
        window[0]
        + timedelta(microseconds=rng.randrange(int((window[1] - window[0]) / timedelta(microseconds=1))))
        for _ in range(150)
    ]
    times += list(ranges["_valid_from"][ranges["_valid_from"] >= window[0]][:60])  # where values change
    times += [
        t - timedelta(microseconds=1) for t in times[-60:] if t - timedelta(microseconds=1) >= window[0]
    ]
    frame = pd.DataFrame([(u, t) for u in USERS for t in times], columns=["user_id", "ts"])
    training = view.get_historical_features(frame, "ts")
    features = [f for f in ranges.columns if f not in ("user_id", "ts", "_valid_from", "_valid_to")]
    found = 0
    for row in training.itertuples(index=False):
        mine = ranges[(ranges.user_id == row.user_id) & (ranges._valid_from <= row.ts)]
        mine = mine[mine._valid_to.isna() | (mine._valid_to > row.ts)]
        assert len(mine) <= 1, (row, mine)
        values = [getattr(row, f"{name}__{f}") for f in features]
        if len(mine) == 0:
            assert all(plain(v) in (None, 0, []) for v in values), row
            continue
        found += 1
        assert floats_close([plain(v) for v in values], [plain(mine.iloc[0][f]) for f in features], RTOL), row
    assert found > 300


def test_stream_views_without_events_give_empty_windows_on_both_paths(tmp_path, snowflake_server):
    """Before anything was processed or backfilled (no event log table yet), a training set and a
    range are those of empty windows on both paths."""
    tables = {"raw.events": rows_sql(COLUMNS, history())}
    frame = spine().head(30)
    results = []
    for side in (
        Side(events_repo(tmp_path / "duck", VIEWS, tables=tables), events=False),
        Side(snowflake_events_repo(tmp_path / "snow", snowflake_server, VIEWS, tables), events=False),
    ):
        try:
            training = side.training(frame)
            assert (training.live_stats__amount_count_10m == 0).all()
            assert training.interval_stats__amount_max_10m.isna().all()
            assert training.last_payment__amount.isna().all()
            assert training.daily_amounts__amount_sum_1d.notna().any()  # the batch view has its values
            for name in STREAM_VIEWS:
                assert (
                    side.workspace.get_feature_view(name)
                    .get_features_in_range(DAY, DAY + timedelta(hours=1))
                    .empty
                )
            results.append(training)
        finally:
            side.runtime.close()
    pd.testing.assert_frame_equal(results[1], results[0])
