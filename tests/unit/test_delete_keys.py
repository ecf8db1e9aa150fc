"""Deleting keys (right to be forgotten) and vanished keys on the embedded stores (Delta offline, SQLite
online): afterwards the keys are absent from lookups, training sets and ranges; reruns bring them back
only if the source still holds them; bad input deletes nothing; a busy view waits or refuses
(``tests/integration/test_delete_keys_safety.py`` kills a delete midway and streams a million keys)."""

from __future__ import annotations

import threading
from datetime import datetime

import pandas as pd
import pytest
from helpers import events_repo
from materialization_scenarios import (
    D1,
    DAY,
    EVENTS,
    Backend,
    assert_online_equals_offline,
    duckdb_backend,
    events_sql,
    offline_rows,
)

from featureplane.materialization.deletion import CsvKeys, DeletionError, delete_keys, keys_from
from featureplane.materialization.materialize import materialize
from featureplane.online_stores.base import OnlineRow
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.retrieval.workspace import Workspace


@pytest.fixture
def backend(tmp_path) -> Backend:
    built = duckdb_backend(tmp_path)
    built.materialize(D1, D1 + 3 * DAY)
    yield built
    built.runtime.close()


def users(backend: Backend) -> list[str]:
    return sorted({row[0] for row in offline_rows(backend.runtime, backend.state)})


def handle(backend: Backend):
    return Workspace(backend.runtime, backend.state).get_feature_view("amounts")


def test_deleted_keys_are_gone_from_lookups_training_sets_and_ranges(backend):
    view = handle(backend)
    report = view.delete_keys(pd.DataFrame({"user_id": ["u1", "u3"]}))
    assert report["keys"] == 2
    assert report["offline"]["rows"] == 3 and report["online"]["rows"] == 2
    assert users(backend) == ["u2"]
    assert backend.read_online("u1", "u2", "u3")[0] is None
    assert backend.read_online("u3")[0] is None
    assert view.get_online_features({"user_id": "u1"}) == {"amounts.amount": None, "amounts.n": None}
    spine = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "ts": [datetime(2024, 1, 5)] * 3})
    training = view.get_historical_features(spine, "ts")
    assert training["amounts__amount"].isna().tolist() == [True, False, True]
    ranges = view.get_features_in_range(D1, D1 + 5 * DAY)
    assert set(ranges["user_id"]) == {"u2"}
    assert_online_equals_offline(backend.runtime, backend.state)


def test_deleting_twice_is_a_no_op(backend):
    view = handle(backend)
    view.delete_keys(["u1"])
    version = backend.runtime.offline_store.version(backend.state.table_id("amounts"))
    again = view.delete_keys(["u1", "nobody"])
    assert again["offline"]["rows"] == 0 and again["online"]["rows"] == 0
    assert backend.runtime.offline_store.version(backend.state.table_id("amounts")) == version  # no commit
    assert users(backend) == ["u2", "u3"]


def test_a_rerun_brings_a_key_back_only_while_the_source_holds_it(backend):
    handle(backend).delete_keys(["u1"])
    result = backend.materialize(D1 + DAY, D1 + 2 * DAY)  # the source still has u1 on 01-02
    assert result.online_full_sync is False  # the delete kept the online store's marker current
    assert offline_rows(backend.runtime, backend.state)[0][:2] == ("u1", datetime(2024, 1, 2, 10))
    assert_online_equals_offline(backend.runtime, backend.state)

    handle(backend).delete_keys(["u1"])
    backend.load_tables(events_sql([e for e in EVENTS if e[0] != "u1"]))  # the source forgot u1 too
    backend.materialize(D1, D1 + 3 * DAY)
    assert users(backend) == ["u2", "u3"]
    assert backend.read_online("u1") == [None]
    assert_online_equals_offline(backend.runtime, backend.state)


def test_online_only_and_offline_only(backend):
    view = handle(backend)
    report = view.delete_keys(["u2"], offline=False)
    assert report["offline"] is None and report["online"]["rows"] == 1
    assert "u2" in users(backend) and backend.read_online("u2") == [None]
    report = view.delete_keys(["u3"], online=False)
    assert report["online"] is None and report["offline"]["rows"] == 1
    assert "u3" not in users(backend) and backend.read_online("u3")[0] is not None
    with pytest.raises(DeletionError, match="no store chosen"):
        view.delete_keys(["u1"], online=False, offline=False)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "the list of keys is empty"),
        ([None], r"key 0: join key 'user_id' is empty"),
        (["u1", 7], r"key 1: join key 'user_id' must be string, got 7 \(int\)"),
        ([("u1", "x")], r"key 0: expected 1 value\(s\) \(user_id\), got 2"),
        (pd.DataFrame({"customer": ["u1"]}), r"columns must be the join keys \(user_id\), got customer"),
        ("u1", "keys must be a DataFrame or a list of keys"),
    ],
)
def test_bad_keys_delete_nothing(backend, keys, message):
    before = offline_rows(backend.runtime, backend.state)
    with pytest.raises(DeletionError, match=message):
        handle(backend).delete_keys(keys)
    assert offline_rows(backend.runtime, backend.state) == before
    assert all(v is not None for v in backend.read_online("u1", "u2", "u3"))


def test_unknown_views_and_views_without_rows_are_refused(backend):
    with pytest.raises(DeletionError, match=r"has no feature view 'nope' \(it has: amounts\)") as caught:
        delete_keys(backend.runtime, backend.state, "nope", [("u1",)])
    assert caught.value.code == "not_found"


INT_VIEW = """
    from datetime import datetime, timedelta
    from base import events
    from featureplane import Attribute, Entity, Field, Float64, Int64, String, batch_feature_view

    account = Entity(name="account", join_keys=[Field("account_id", Int64), Field("region", String)])

    @batch_feature_view(sources=[events], entities=[account], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), batch_schedule=timedelta(days=1), online=True)
    def balances(events):
        return f"SELECT CAST(substr(user_id, 2) AS BIGINT) AS account_id, 'eu' AS region, ts, amount FROM {events}"
"""


def test_a_keys_file_is_checked_whole_before_anything_is_deleted(tmp_path):
    repo = events_repo(tmp_path / "repo", INT_VIEW, tables=events_sql(EVENTS))
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        state = runtime.registry.load("prod")
        materialize(runtime, state, "balances", D1, D1 + 3 * DAY)
        view = state.feature_view("balances")
        table_id = state.table_id("balances")
        bad = tmp_path / "bad.csv"
        bad.write_text("region,account_id\neu,1\neu,two\n")
        with pytest.raises(
            DeletionError, match=r"bad.csv: line 3: join key 'account_id' must be int64, got 'two'"
        ):
            delete_keys(runtime, state, "balances", CsvKeys(bad, view))
        assert runtime.offline_store.read(table_id, view).num_rows == 4  # line 2 was valid, yet kept
        for text, message in [
            ("", "the keys file is empty"),
            (
                "account_id\n1\n",
                r"line 1: the header must name the join keys of 'balances' \(account_id, region\)",
            ),
            ("account_id,region\n", "the list of keys is empty"),
            ("account_id,region\n1\n", r"line 2: expected 2 field\(s\), got 1"),
            ("account_id,region\n9223372036854775808,eu\n", "must be int64, got '9223372036854775808'"),
            ("account_id,region\n1,\n", r"line 2: join key 'region' is empty"),
        ]:
            bad.write_text(text)
            with pytest.raises(DeletionError, match=message):
                delete_keys(runtime, state, "balances", CsvKeys(bad, view))
        with pytest.raises(DeletionError, match="cannot read the keys file"):
            delete_keys(runtime, state, "balances", CsvKeys(tmp_path / "missing.csv", view))
        good = tmp_path / "good.csv"
        good.write_text("region,account_id\neu,1\neu, 2\n")
        report = delete_keys(runtime, state, "balances", CsvKeys(good, view))
        assert report.offline.rows == 3 and report.online.rows == 2
        rest = runtime.offline_store.read(table_id, view)
        assert rest.column("account_id").to_pylist() == [3]
        assert runtime.online_store.read([(table_id, (1, "eu")), (table_id, (3, "eu"))])[0] is None


def test_a_delete_waits_for_a_materialization_of_the_view_or_refuses(backend):
    """A materialization holds the view's lock from its transformation to its online sync (here it is
    held in its validation step); a delete meanwhile waits, then deletes what that run wrote."""
    runtime, state = backend.runtime, backend.state
    validating, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def slow_check(view, table, start, end) -> list:
        validating.set()
        release.wait()
        return []

    def materializing() -> None:
        try:
            materialize(runtime, state, "amounts", D1, D1 + 3 * DAY, validators=[slow_check])
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    run = threading.Thread(target=materializing)
    run.start()
    validating.wait()
    try:
        with pytest.raises(DeletionError, match=r"is being written .* nothing was deleted") as caught:
            delete_keys(runtime, state, "amounts", [("u1",)], wait_seconds=0.2)
        assert caught.value.code == "busy"
        threading.Timer(0.3, release.set).start()
        report = delete_keys(runtime, state, "amounts", [("u1",)], wait_seconds=120)
    finally:
        release.set()
        run.join()
    assert failures == []
    assert report.offline.rows == 2  # the rows the materialization rewrote: no lost update
    assert users(backend) == ["u2", "u3"] and backend.read_online("u1") == [None]
    assert_online_equals_offline(runtime, state)


AGGREGATE_VIEW = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Aggregate, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Aggregate("amount", "sum", timedelta(days=7)),
                                  Aggregate("amount", "count", timedelta(days=2))],
                        timestamp_field="ts", feature_start_time=datetime(2024, 1, 1),
                        batch_schedule=timedelta(days=1), aggregation_interval=timedelta(days=1), online=True)
    def totals(events):
        return f"SELECT user_id, ts, amount FROM {events}"
"""


def test_an_aggregate_views_tiles_go_offline_and_online_and_its_partitions_stay(tmp_path):
    repo = events_repo(tmp_path, AGGREGATE_VIEW, tables=events_sql(EVENTS))
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        state = runtime.registry.load("prod")
        materialize(runtime, state, "totals", D1, D1 + 3 * DAY)
        view = Workspace(runtime, state).get_feature_view("totals")
        table_id = state.table_id("totals")
        before = view.get_online_features({"user_id": "u2"})
        report = view.delete_keys(["u1"])
        assert report["offline"]["rows"] == 2 and report["online"]["rows"] == 1
        tiles = runtime.offline_store.read(table_id, state.feature_view("totals"))
        assert sorted(set(tiles.column("user_id").to_pylist())) == ["u2", "u3"]
        assert runtime.online_store.read([(table_id, ("u1",))]) == [None]
        assert view.get_online_features({"user_id": "u2"}) == before
        spine = pd.DataFrame({"user_id": ["u1", "u2"], "ts": [datetime(2024, 1, 3)] * 2})
        training = view.get_historical_features(spine, "ts")
        (count,) = [c for c in training.columns if "count" in c]
        assert training[count].tolist() == [0, 1]
        ranges = view.get_features_in_range(D1, D1 + 5 * DAY)
        assert "u1" not in set(ranges["user_id"])
        # The partition markers stayed: the next partition is incremental and u1 stays gone.
        result = materialize(runtime, state, "totals", D1 + 3 * DAY, D1 + 4 * DAY)
        assert result.online_full_sync is False
        assert runtime.online_store.read([(table_id, ("u1",))]) == [None]


TABLE_VIEW = """
    from base import user
    from featureplane import Attribute, FeatureTable, Float64

    scores = FeatureTable(name="scores", entities=[user], timestamp_field="ts",
                          features=[Attribute("score", Float64)], online=True, offline=True)
"""


def test_a_feature_tables_ingested_rows_go_from_both_stores(tmp_path):
    repo = events_repo(tmp_path, TABLE_VIEW)
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        state = runtime.registry.load("prod")
        view = Workspace(runtime, state).get_feature_view("scores")
        rows = [("u1", 1.0), ("u1", 2.0), ("u2", 3.0)]
        view.ingest(
            pd.DataFrame(
                {
                    "user_id": [u for u, _ in rows],
                    "ts": [datetime(2024, 1, 1, h) for h in (1, 2, 3)],
                    "score": [s for _, s in rows],
                }
            )
        )
        report = view.delete_keys(["u1"])
        assert report["offline"]["rows"] == 2 and report["online"]["rows"] == 1
        assert view.get_online_features({"user_id": "u1"}) == {"scores.score": None}
        assert view.get_online_features({"user_id": "u2"}) == {"scores.score": 3.0}
        ranges = view.get_features_in_range(D1, D1 + DAY)
        assert ranges["user_id"].tolist() == ["u2"]


def test_records_still_in_the_ingest_log_are_deleted_too(tmp_path):
    """Records the ingest API acknowledged but has not folded into the offline table yet are folded
    first, then deleted: a later fold cannot bring them back."""
    from featureplane.ingest.log import IngestLog, ingest_log_root
    from featureplane.ingest.offline import flush_ingest_log
    from featureplane.ingest.records import ingest_endpoints
    from featureplane.ingest.service import Ingestor

    repo = events_repo(tmp_path, TABLE_VIEW)
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        state = runtime.registry.load("prod")
        log = IngestLog(ingest_log_root(runtime.config))
        records = [
            {"record": {"user_id": u, "ts": "2024-01-01T01:00:00Z", "score": 1.0}} for u in ("u1", "u2")
        ]
        try:
            Ingestor(runtime.online_store, log).ingest("prod", ingest_endpoints(state), {"scores": records})
        finally:
            log.close()
        view = Workspace(runtime, state).get_feature_view("scores")
        report = view.delete_keys(["u1"])
        assert report["offline"]["rows"] == 1 and report["online"]["rows"] == 1
        assert flush_ingest_log(runtime, state) in ({}, {"scores": 0})
        assert view.get_features_in_range(D1, D1 + DAY)["user_id"].tolist() == ["u2"]


def test_keys_given_in_python_are_typed_like_the_join_keys(backend):
    view = backend.state.feature_view("amounts")
    assert keys_from(view, [{"user_id": "a"}, ("b",), "c"]) == [("a",), ("b",), ("c",)]
    with pytest.raises(DeletionError, match=r"key 0: expected fields user_id, got id"):
        keys_from(view, [{"id": "a"}])


# -- vanished keys ------------------------------------------------------------------------------------


def test_a_full_sync_removes_keys_the_offline_store_no_longer_holds(backend):
    runtime, state = backend.runtime, backend.state
    table_id = state.table_id("amounts")
    runtime.online_store.write(table_id, [OnlineRow(("ghost",), 1, [1.0, 1])])
    runtime.online_store.set_sync_marker(table_id, None)  # e.g. online turned on again: every key
    result = backend.materialize(D1, D1 + DAY)
    assert result.online_full_sync is True and result.online_deleted == 1
    assert backend.read_online("ghost") == [None]
    assert_online_equals_offline(runtime, state)


def test_removing_vanished_keys_can_be_turned_off(tmp_path):
    built = duckdb_backend(tmp_path)
    built.repo.set_config("lifecycle", delete_vanished_keys=False)
    runtime = built.repo.runtime()
    try:
        state = runtime.registry.load("prod")
        table_id = state.table_id("amounts")
        runtime.online_store.write(table_id, [OnlineRow(("ghost",), 1, [1.0, 1])])
        result = materialize(runtime, state, "amounts", D1, D1 + DAY)
        assert result.online_full_sync is True and result.online_deleted == 0
        assert runtime.online_store.read([(table_id, ("ghost",))])[0] is not None
    finally:
        runtime.close()
        built.runtime.close()


def test_the_cli_deletes_locally_and_names_bad_input_in_one_line(backend, tmp_path):
    backend.runtime.close()
    keys = tmp_path / "keys.csv"
    keys.write_text("\ufeffuser_id\nu1\n")  # as spreadsheets save it
    done = backend.repo.cli(
        "delete-keys", "--view", "amounts", "--keys-file", str(keys), "-w", "prod", "--no-online"
    )
    assert "prod/amounts: offline store: 1 key(s), 2 row(s) removed." in done.stdout
    assert "online store" not in done.stdout
    assert users(backend) == ["u2", "u3"] and backend.read_online("u1")[0] is not None
    missing = backend.repo.cli(
        "delete-keys", "--view", "nope", "--keys-file", str(keys), "-w", "prod", check=False
    )
    assert missing.returncode == 1 and "has no feature view 'nope'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
