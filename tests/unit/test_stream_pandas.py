"""mode="pandas" stream feature views: the transformation takes a batch's records as a DataFrame and
returns the rows to use; the processor gives the same tiles, states and reports as mode="python"."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from helpers import events_repo
from hypothesis import HealthCheck, given, settings
from stream_views import T0, aggregate_view, latest_view, payments, record, user
from test_repo_validation import problems_of
from test_stream_property import deliveries

from featureplane import Attribute, Int64, StreamFeatureView, String
from featureplane.online_stores.sqlite import SQLiteOnlineStore
from featureplane.repo.planning import load_definitions
from featureplane.streams.processor import StreamProcessor
from featureplane.streams.sqlite import SQLiteStreamStore

MINUTE = timedelta(minutes=1)


def cents_frame(df):
    kept = df[df["note"] != "test"]
    return kept[["user_id", "ts", "amount"]]


def doubled_frame(df):
    df = df[df["amount"].isna() | (df["amount"] != 13)].copy()
    df["amount"] = df["amount"] * 2
    return df


def doubled(record):
    if record["amount"] == 13:
        return None
    return {**record, "amount": None if record["amount"] is None else record["amount"] * 2}


def pandas_twin(view: StreamFeatureView, function) -> StreamFeatureView:
    """The same view in mode="pandas" with ``function`` as its transformation."""
    return StreamFeatureView(
        name=view.name,
        source=payments,
        entities=[user],
        features=view.features,
        function=function,
        mode="pandas",
        aggregation_interval=view.aggregation_interval,
        stream_processing_mode=view.stream_processing_mode,
        allowed_lateness=view.allowed_lateness,
        online=True,
    )


def twin(view: StreamFeatureView, function, path) -> StreamProcessor:
    store = SQLiteStreamStore(SQLiteOnlineStore(path / "online.db"))
    twin_view = pandas_twin(view, function)
    return StreamProcessor(twin_view.spec(), "prod/payment_stats/g1", store, transform=twin_view)


def python(view: StreamFeatureView, function, path) -> StreamProcessor:
    store = SQLiteStreamStore(SQLiteOnlineStore(path / "online.db"))
    plain = StreamFeatureView(
        name=view.name,
        source=payments,
        entities=[user],
        features=view.features,
        function=function,
        aggregation_interval=view.aggregation_interval,
        stream_processing_mode=view.stream_processing_mode,
        allowed_lateness=view.allowed_lateness,
        online=True,
    )
    return StreamProcessor(plain.spec(), "prod/payment_stats/g1", store, transform=plain)


def same(a: StreamProcessor, b: StreamProcessor, users) -> None:
    for user_id in users:
        assert a.store.tiles(a.table_id, (user_id,)) == b.store.tiles(b.table_id, (user_id,)), user_id
        rows = [s.online.read([(p.table_id, (user_id,))]) for s, p in ((a.store, a), (b.store, b))]
        assert rows[0] == rows[1]
    assert a.state() == b.state()


def messy_batches(rng: random.Random):
    """Batches over three shards with dropped, invalid and late records among the good ones."""
    batches = []
    next_sequence = {f"s{i}": 0 for i in range(3)}
    for _ in range(12):
        shard = rng.choice(sorted(next_sequence))
        batch = []
        for _ in range(rng.randint(1, 15)):
            n = next_sequence[shard]
            next_sequence[shard] += 1
            user_id = rng.choice(["u1", "u2", "u3"] * 4 + [None])
            ts = T0 + timedelta(seconds=rng.randint(-1800, 1800))
            amount = rng.choice([rng.randint(-5, 50)] * 6 + [None, "five", 13, 2**61 + 1, 2**63])
            note = rng.choice(["", "", "test"])
            batch.append(record(shard, n, user_id, ts if rng.random() > 0.05 else "not a time", amount, note))
        if batch and rng.random() < 0.3:  # a redelivery from the batch's start
            batches.append(batch[: len(batch) // 2])
        batches.append(batch)
    return batches


@pytest.mark.parametrize(("py", "frame"), [("cents", cents_frame), ("doubled", doubled_frame)])
def test_python_and_pandas_modes_give_identical_tiles_states_and_reports(tmp_path, py, frame):
    from stream_views import cents

    rng = random.Random(23)
    view = aggregate_view(lateness=timedelta(minutes=40))
    a = python(view, {"cents": cents, "doubled": doubled}[py], tmp_path / "a")
    b = twin(view, frame, tmp_path / "b")
    (tmp_path / "a").mkdir(exist_ok=True)
    results = []
    for batch in messy_batches(rng):
        ra, rb = a.process(batch), b.process(batch)
        assert ra == rb
        results.append(ra)
    assert sum(r.applied for r in results) > 20 and sum(r.invalid for r in results) > 3
    assert sum(r.late for r in results) > 0 and sum(r.dropped for r in results) > 0
    same(a, b, ["u1", "u2", "u3"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=deliveries())
def test_both_modes_agree_for_any_arrival_order_and_redelivery(tmp_path_factory, data):
    from stream_views import cents

    _, batches = data
    view = aggregate_view(
        windows=(timedelta(minutes=2), timedelta(minutes=20)), lateness=timedelta(minutes=3)
    )
    a = python(view, cents, tmp_path_factory.mktemp("python"))
    b = twin(view, cents_frame, tmp_path_factory.mktemp("pandas"))
    for batch in batches:
        records = [record(shard, n, u, T0 + timedelta(seconds=s), a_) for shard, n, u, s, a_ in batch]
        assert a.process(records) == b.process(records)
    same(a, b, ["u1", "u2"])


def test_a_plain_view_in_pandas_mode_keeps_the_latest_row(tmp_path):
    def latest_frame(df):
        return df[df["amount"] > 0]

    view = latest_view()
    plain = StreamFeatureView(name="last_payment", source=payments, entities=[user], mode="pandas",
                              features=[Attribute("amount", Int64), Attribute("note", String)],
                              function=latest_frame, online=True)  # fmt: skip
    store = SQLiteStreamStore(SQLiteOnlineStore(tmp_path / "online.db"))
    proc = StreamProcessor(plain.spec(), "prod/last_payment/g1", store, transform=plain)
    proc.process(
        [record("s1", 1, "u1", T0 + MINUTE, 5, "b"), record("s1", 2, "u1", T0 + 2 * MINUTE, -1, "c")]
    )
    (row,) = store.online.read([(proc.table_id, ("u1",))])
    assert row.values == [5, "b"] and view.name == "last_payment"


def test_a_failing_frame_function_refuses_only_the_records_it_fails_on(tmp_path):
    def picky(df):
        if (df["amount"] == 7).any():
            raise RuntimeError("seven is not allowed")
        return df

    proc = twin(aggregate_view(), picky, tmp_path)
    result = proc.process([record("s1", i, "u1", T0 + i * MINUTE, a) for i, a in enumerate([1, 7, 2])])
    assert (result.applied, result.invalid) == (2, 1)
    assert result.problems == ["record s1:1: the transformation failed: RuntimeError('seven is not allowed')"]


def test_a_frame_function_must_keep_its_rows_index(tmp_path):
    def renumbered(df):
        return df.iloc[::-1].reset_index(drop=True)

    def not_a_frame(df):
        return len(df)

    proc = twin(aggregate_view(), renumbered, tmp_path / "a")
    (tmp_path / "a").mkdir(exist_ok=True)
    result = proc.process([record("s1", i, "u1", T0, 1) for i in range(3)])
    assert result.invalid == 3 and result.applied == 0
    assert "not rows of its input" in result.problems[0]
    other = twin(aggregate_view(), not_a_frame, tmp_path / "b")
    assert "returned int, not a DataFrame" in other.process([record("s1", 0, "u1", T0, 1)]).problems[0]


PANDAS_VIEW = """
    from datetime import timedelta
    from base import events, user
    from featureplane import Aggregate, Field, Float64, StreamSource, String, Timestamp, stream_feature_view

    payments = StreamSource(name="payments", timestamp_field="ts", batch_config=events,
                            push_schema=[Field("user_id", String), Field("ts", Timestamp),
                                         Field("amount", Float64)])
    LIMIT = 5

    @stream_feature_view(source=payments, entities=[user], mode="pandas",
                         aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate("amount", "sum", timedelta(minutes=5))], online=True)
    def big_payments(df):
        return df[df["amount"] > LIMIT]
"""


def test_pandas_mode_is_validated_with_file_and_line(tmp_path):
    (problem,) = problems_of(events_repo(tmp_path / "a", PANDAS_VIEW))
    assert "views.py:11" in problem and "uses module-level name(s) LIMIT" in problem
    assert "(pandas is available as pd)" in problem
    fixed = PANDAS_VIEW.replace("> LIMIT]", "> 5]")
    view = load_definitions(events_repo(tmp_path / "b", fixed).runtime()).feature_views["big_payments"]
    assert view.transformation.mode == "pandas" and "df['amount'] > 5" in view.transformation.python
    wrong = PANDAS_VIEW.replace('mode="pandas"', 'mode="snowflake_sql"')
    (problem,) = problems_of(events_repo(tmp_path / "c", wrong))
    assert "views.py:11" in problem and "mode must be one of python, pandas; got 'snowflake_sql'" in problem


PANDAS_TWIN = """
    @stream_feature_view(source=payments, entities=[user], mode="pandas", aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate(Field("amount", Int64), "count", timedelta(minutes=5)),
                                   Aggregate(Field("amount", Int64), "sum", timedelta(hours=1)),
                                   Aggregate(Field("merchant", String), "count_distinct", timedelta(hours=1))],
                         online=True, allowed_lateness=timedelta(hours=2))
    def payment_counts_pandas(df):
        return df[df["merchant"] != "test"]
"""


def test_stream_run_applies_a_pandas_view_from_its_stored_source_like_its_python_twin(tmp_path):
    import json

    from stream_repo import STREAM_REPO_VIEWS, payment

    from featureplane.repo.planning import apply_plan, plan_repository
    from featureplane.serving.app import create_lookup_service
    from featureplane.serving.protocol import Request
    from featureplane.streams.runner import open_stream, run_stream

    repo = events_repo(tmp_path / "repo", STREAM_REPO_VIEWS + PANDAS_TWIN)
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
    service = create_lookup_service(repo.config())
    rng = random.Random(2)
    for _ in range(5):
        records = [
            payment(f"u{rng.randint(0, 3)}", f"2026-03-01T09:{rng.randint(0, 59):02d}:00Z", rng.randint(1, 9),
                    rng.choice(["m1", "m2", "test"]))
            for _ in range(20)
        ]  # fmt: skip
        body = json.dumps({"workspaceName": "prod", "records": {"payments": records}}).encode()
        assert service.handle(Request("POST", "/api/v1/ingest", {}, body)).status == 200
    service.snapshots.close()
    with repo.runtime() as runtime:
        for view in ("payment_counts", "payment_counts_pandas"):
            totals = run_stream(runtime, "prod", view, once=True, batch_size=17)
            assert totals.applied > 50 and totals.dropped > 0 and totals.invalid == 0
        python_side, _ = open_stream(runtime, "prod", "payment_counts")
        pandas_side, _ = open_stream(runtime, "prod", "payment_counts_pandas")
        assert pandas_side.pandas and not python_side.pandas
        for user_id in ("u0", "u1", "u2", "u3"):
            assert python_side.store.tiles(python_side.table_id, (user_id,)) == pandas_side.store.tiles(
                pandas_side.table_id, (user_id,)
            )
        assert python_side.state() == pandas_side.state()
