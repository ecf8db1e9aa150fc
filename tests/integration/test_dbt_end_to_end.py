"""dbt upstream of feature views, end to end on one prepared copy of the example and its dbt project:
apply, then one Dagster run (real CLI) that builds the dbt models and then the feature views, HTTP
lookups and a training set; an edited model's SQL planned as a recreate and re-materialized; a day of an
incremental model rebuilt alone; a failing dbt test blocking the views downstream.

The tests share the module's repository and run in order (the failing-test case is last: it leaves a
bad row behind)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, Repo, copy_example_repo, generate_small_data, post_json, run_dagster
from test_end_to_end import GET_FEATURES, offline_snapshot

pytestmark = pytest.mark.integration

DAYS = 10
# The data ends today (UTC), so yesterday's rows are within their one-day ttl when served.
END = datetime.now(UTC).date()
FIRST, LAST = END - timedelta(days=DAYS), END - timedelta(days=1)
MODELS = ["stg_transactions", "int_user_daily_activity", "user_spend_7d"]
VIEWS = ["prod/user_daily_activity", "prod/user_spend_7d"]
SPEND_7D = ["spend_7d", "transactions_7d", "active_days_7d", "avg_transaction_7d"]


@dataclass
class DbtExample:
    repo: Repo
    home: Path
    apply: str
    run: str

    @property
    def dbt_dir(self) -> Path:
        return self.repo.root.parent / "dbt"

    def materialize(self, select: list[str], partition: str, check: bool = True) -> str:
        flag = "--partition-range" if "..." in partition else "--partition"
        args = [
            "asset",
            "materialize",
            "-m",
            "dagster_project",
            "--select",
            ",".join(select),
            flag,
            partition,
        ]
        out = run_dagster(args, self.repo, self.home, check=check)
        return out.stdout + out.stderr


def warehouse(repo: Repo, sql: str, write: bool = False) -> list[tuple]:
    from featureplane.compute.duckdb import connect_warehouse

    con = connect_warehouse(repo.config().warehouse_path, read_only=not write)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def online_snapshot(repo: Repo, view: str) -> list:
    runtime = repo.runtime()
    try:
        table_id = runtime.registry.load("prod").table_id(view)
        return runtime.online_store.read([(table_id, (f"user_{i}",)) for i in range(300)])
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def dbt_example(tmp_path_factory) -> DbtExample:
    root = tmp_path_factory.mktemp("dbt_e2e")
    repo = copy_example_repo(root / "feature_repo")
    generate_small_data(repo, days=DAYS, end=END)
    repo.cli("workspace", "create", "prod", "--live")
    applied = repo.cli("apply", "--yes")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "scripts" / "dagster.yaml", home / "dagster.yaml")
    example = DbtExample(repo, home, applied.stdout + applied.stderr, "")
    # One run: the unpartitioned staging view, the microbatch models for the ten days, then the views.
    example.run = example.materialize(["stg_users", *MODELS, *VIEWS], f"{FIRST}...{LAST}")
    return example


def test_a_dbt_declared_view_is_applied_materialized_served_and_trained_on(dbt_example, lookup_server):
    repo = dbt_example.repo
    assert (
        "user_spend_7d" in dbt_example.apply
        and "dbt has not built model 'user_spend_7d'" in dbt_example.apply
    )
    log = dbt_example.run
    assert log.count("RUN_SUCCESS") == 1 and "for 10 partition(s)" in log
    assert "Asset check 'unique_stg_transactions_transaction_id' on 'stg_transactions'" in log

    # The offline store holds exactly the model's rows, and they are rolling 7-day sums of the
    # intermediate model's daily rows, across batch boundaries.
    model = warehouse(repo, f"SELECT user_id, ts, {', '.join(SPEND_7D)} FROM main.user_spend_7d")
    offline = offline_snapshot(repo, "user_spend_7d")
    assert sorted(model) == offline and len({r[1].date() for r in offline}) == DAYS
    daily = warehouse(
        repo,
        "SELECT user_id, activity_date, total_amount, transaction_count FROM main.int_user_daily_activity",
    )
    user, ts, spend, count, days, _ = max(offline, key=lambda r: (r[4], r[1]))
    window = [d for d in daily if d[0] == user and ts.date() - timedelta(days=7) < d[1].date() <= ts.date()]
    assert (spend, count, days) == (
        pytest.approx(sum(d[2] for d in window)),
        sum(d[3] for d in window),
        len(window),
    )

    # Lookups over HTTP: fraud_detection_v2 ends with the dbt-declared view's features. The user was
    # active on the last two days.
    latest = {r[0]: r for r in offline}
    active = {(r[0], r[1].date()) for r in offline}
    user = next(u for u in sorted(latest) if (u, LAST) in active and (u, LAST - timedelta(days=1)) in active)
    server = lookup_server(repo)
    status, body = post_json(
        server.url + GET_FEATURES,
        {
            "params": {
                "workspaceName": "prod",
                "featureServiceName": "fraud_detection_v2",
                "joinKeyMap": {"user_id": user},
                "metadataOptions": {"includeNames": True, "includeServingStatus": True},
            }
        },
    )
    assert status == 200
    names = [m["name"] for m in body["metadata"]["features"]]
    assert names[-4:] == [f"user_spend_7d.{f}" for f in SPEND_7D]
    assert names[-7:-4] == [
        "user_daily_activity.foreign_share",
        "user_daily_activity.online_share",
        "user_daily_activity.distinct_categories",
    ]
    if datetime.now(UTC).date() == END:  # yesterday's row is within its one-day ttl until midnight
        assert [m["status"] for m in body["metadata"]["features"][-7:]] == ["PRESENT"] * 7
        row = latest[user]
        assert body["result"]["features"][-4:] == [
            pytest.approx(row[2]),
            str(row[3]),
            str(row[4]),
            pytest.approx(row[5]),
        ]

    # A point-in-time training set from the same rows.
    import featureplane

    service = featureplane.get_workspace("prod", config=repo.config_path).get_feature_service(
        "fraud_detection_v2"
    )
    rows = sorted(r for r in offline if r[0] == user)
    spine = pd.DataFrame(
        {"user_id": [user, user], "ts": [rows[-1][1], rows[-1][1] - pd.Timedelta(microseconds=1)]}
    )
    training = service.get_historical_features(spine, timestamp_key="ts")
    assert training["user_spend_7d__spend_7d"].tolist() == [
        pytest.approx(rows[-1][2]),
        pytest.approx(rows[-2][2]),
    ]


def test_lineage_reads_raw_tables_dbt_models_views_services(dbt_example):
    import dagster as dg

    from dagster_project.definitions import build_definitions

    defs = build_definitions(dbt_example.repo.config())
    graph = defs.resolve_asset_graph()

    def parents(*key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(list(key))).parent_keys}

    assert parents("stg_transactions") == {"raw/transactions"}
    assert parents("int_user_daily_activity") == {"stg_transactions", "stg_users"}
    assert parents("user_spend_7d") == {"int_user_daily_activity"}
    assert parents("prod", "user_spend_7d") == {"user_spend_7d"}
    assert parents("prod", "user_daily_activity") == {"int_user_daily_activity"}
    assert parents("prod", "fraud_detection_v2") == {
        "prod/user_daily_spend",
        "prod/user_profile",
        "prod/user_daily_activity",
        "prod/user_spend_7d",
    }
    assert not graph.get(dg.AssetKey(["raw", "users"])).is_materializable
    model, view = graph.get(dg.AssetKey(["user_spend_7d"])), graph.get(dg.AssetKey(["prod", "user_spend_7d"]))
    assert (
        model.partitions_def == view.partitions_def
        and model.backfill_policy == dg.BackfillPolicy.single_run()
    )
    assert graph.get(dg.AssetKey(["stg_users"])).partitions_def is None

    checks = {k.to_user_string(): graph.get_check_spec(k) for k in graph.asset_check_keys}
    accepted = checks[
        "stg_transactions:accepted_values_stg_transactions_category__grocery__restaurants__travel__electronics__fuel__entertainment__health__online"
    ]
    assert accepted.blocking
    # dbt tests are checks on the dbt models (the views' own quality checks live under prod/).
    assert {c.split(":")[0] for c in checks if not c.startswith("prod/")} == {
        "stg_transactions",
        "stg_users",
        "int_user_daily_activity",
        "user_spend_7d",
    }

    # The daily schedule's job builds each day's dbt models before the views that read them.
    (job,) = [j for j in defs.jobs if "__daily__" in j.name]
    selected = defs.resolve_job_def(job.name).asset_layer.selected_asset_keys
    assert {dg.AssetKey([m]) for m in MODELS} <= selected and dg.AssetKey(["stg_users"]) not in selected


def test_editing_a_models_sql_is_planned_as_a_recreate_and_changes_the_features(dbt_example):
    import json

    repo = dbt_example.repo
    models = dbt_example.dbt_dir / "models"

    # Upstream: the intermediate model changes both views built on it, directly or through dbt.
    intermediate = models / "intermediate" / "int_user_daily_activity.sql"
    original = intermediate.read_text()
    intermediate.write_text(
        original.replace("count(*) as transaction_count", "count(*) + 0 as transaction_count")
    )
    plan = json.loads(repo.cli("plan", "--json").stdout)
    assert {(c["action"], c["kind"], c["name"]) for c in plan["changes"]} == {
        ("update", "data_source", "int_user_daily_activity"),
        ("update", "data_source", "user_spend_7d"),
        ("recreate", "feature_view", "user_daily_activity"),
        ("recreate", "feature_view", "user_spend_7d"),
    }
    reasons = {c["name"]: c["reasons"] for c in plan["changes"] if c["kind"] == "feature_view"}
    assert reasons["user_daily_activity"] == [
        "source 'int_user_daily_activity' changed (its dbt model's SQL or a model upstream of it)"
    ]
    intermediate.write_text(original)

    # The model itself: plan shows the SQL diff, apply recreates the view, a run rebuilds its data.
    model = models / "features" / "user_spend_7d.sql"
    old = offline_snapshot(repo, "user_spend_7d")
    assert any(r[2] != round(r[2]) for r in old)
    model.write_text(
        model.read_text().replace("sum(a.total_amount) as spend_7d", "round(sum(a.total_amount)) as spend_7d")
    )
    out = repo.cli("plan", env={"COLUMNS": "200"}).stdout
    assert re.search(
        r"recreate\s+feature view\s+user_spend_7d\s+\(transformation changed; source 'user_spend_7d' changed",
        out,
    )
    assert (
        "-    sum(a.total_amount) as spend_7d," in out
        and "+    round(sum(a.total_amount)) as spend_7d," in out
    )
    assert "0 to create, 1 to update, 1 to recreate, 0 to delete" in out
    before = repo.runtime().registry.load("prod")
    repo.cli("apply", "--yes")
    after = repo.runtime().registry.load("prod")
    assert after.generations["user_spend_7d"] == before.generations["user_spend_7d"] + 1
    assert after.generations["user_daily_activity"] == before.generations["user_daily_activity"]

    assert offline_snapshot(repo, "user_spend_7d") == []  # the new generation has no data yet
    log = dbt_example.materialize(["user_spend_7d", "prod/user_spend_7d"], f"{FIRST}...{LAST}")
    assert log.count("RUN_SUCCESS") == 1
    offline = offline_snapshot(repo, "user_spend_7d")
    assert [r[:2] for r in offline] == [r[:2] for r in old]
    assert all(
        abs(new[2] - was[2]) <= 0.5 and new[2] == round(new[2]) for new, was in zip(offline, old, strict=True)
    )
    model_rows = warehouse(repo, f"SELECT user_id, ts, {', '.join(SPEND_7D)} FROM main.user_spend_7d")
    assert sorted(model_rows) == offline
    latest = {r[0]: r for r in offline}
    online = dict(zip([f"user_{i}" for i in range(300)], online_snapshot(repo, "user_spend_7d"), strict=True))
    assert {u: v.values[0] for u, v in online.items() if v} == {u: r[2] for u, r in latest.items()}


def test_rebuilding_one_day_of_an_incremental_model_leaves_the_other_days_untouched(dbt_example):
    repo = dbt_example.repo
    day, other = FIRST + timedelta(days=2), FIRST + timedelta(days=4)

    def daily() -> dict[date, list[tuple]]:
        rows = warehouse(
            repo, "SELECT activity_date, user_id, total_amount FROM main.int_user_daily_activity ORDER BY ALL"
        )
        out: dict[date, list[tuple]] = {}
        for row in rows:
            out.setdefault(row[0].date(), []).append(row)
        return out

    before = daily()
    # The raw data of two days changes; only one of them is rebuilt.
    for d in (day, other):
        warehouse(
            repo,
            f"UPDATE raw.transactions SET amount = amount * 10 WHERE ts >= TIMESTAMP '{d}' "
            f"AND ts < TIMESTAMP '{d + timedelta(days=1)}'",
            write=True,
        )
    log = dbt_example.materialize(["stg_transactions", "int_user_daily_activity"], str(day))
    assert log.count("RUN_SUCCESS") == 1 and f"--event-time-start {day}T00:00:00" in log
    after = daily()
    assert set(after) == set(before)
    assert [r[2] for r in after[day]] == pytest.approx([10 * r[2] for r in before[day]])
    assert {d: rows for d, rows in after.items() if d != day} == {
        d: rows for d, rows in before.items() if d != day
    }


def test_a_failing_dbt_test_blocks_the_views_downstream_and_shows_as_a_failed_check(dbt_example):
    import dagster as dg
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    repo = dbt_example.repo
    offline = {v: offline_snapshot(repo, v) for v in ("user_spend_7d", "user_daily_activity")}
    online = {v: online_snapshot(repo, v) for v in ("user_spend_7d", "user_daily_activity")}
    warehouse(
        repo,
        "INSERT INTO raw.transactions SELECT 'txn_bad', user_id, merchant_id, 'crypto', country, amount, "
        f"is_fraud, ts FROM raw.transactions WHERE ts >= TIMESTAMP '{LAST}' LIMIT 1",
        write=True,
    )
    log = dbt_example.materialize([*MODELS, *VIEWS], str(LAST), check=False)
    assert "RUN_FAILURE" in log and "RUN_SUCCESS" not in log
    assert 'Started execution of step "prod__user_spend_7d"' not in log
    assert 'Started execution of step "prod__user_daily_activity"' not in log

    with dg.DagsterInstance.from_config(str(dbt_example.home)) as instance:
        key = dg.AssetCheckKey(
            dg.AssetKey(["stg_transactions"]),
            "accepted_values_stg_transactions_category__grocery__restaurants__travel__electronics__fuel__entertainment__health__online",
        )
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert record.status == AssetCheckExecutionRecordStatus.FAILED

    assert {v: offline_snapshot(repo, v) for v in offline} == offline
    assert {v: online_snapshot(repo, v) for v in online} == online
