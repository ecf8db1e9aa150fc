"""The example repository's stream view in ``fraud_detection``: it plans and applies with the rest of the
example as an offline and online view with a backfill asset; its history is backfilled from
``raw.transactions`` through the real Dagster CLI; the demo's stream step (``show_stream`` in
scripts/demo.py, run by ``make demo``) pushes payments through the real ingest API while ``featureplane
stream run`` runs in the background and sees each one counted in ``fraud_detection`` through the real
lookup API; and the demo's training set of ``fraud_detection`` holds the stream features, from the
backfilled history and from the pushed events."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import pytest
from conftest import ROOT, SMALL_END, run_dagster

from featureplane.compute.duckdb import connect_warehouse
from featureplane.materialization.partitions import utcnow

pytestmark = pytest.mark.integration

sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402

FEATURES = ["amount_count_5m", "amount_sum_5m", "merchant_id_count_distinct_5m"]


def test_the_example_plans_and_applies_its_stream_view_in_fraud_detection(applied_example):
    plan = applied_example.cli("plan", "-w", "prod").stdout
    assert "No changes" in plan  # applied as planned
    with applied_example.runtime() as runtime:
        state = runtime.registry.load("prod")
        view = state.feature_view(demo.STREAM_VIEW)
        assert view.kind == "stream" and view.stream_processing_mode == "continuous"
        assert view.online and view.offline and view.start == datetime(2026, 8, 1)
        assert view.schedule == timedelta(days=1)
        assert [f.name for f in view.features] == FEATURES
        source = state.definitions.sources[demo.STREAM_SOURCE]
        assert source.stream.get("type") != "kinesis" and source.batch_source == "transactions"
        services = state.definitions.feature_services
        assert [part.view for part in services[demo.SERVICE].features][-1] == demo.STREAM_VIEW
        assert "fraud_detection_streaming" not in services  # the separate service is gone


def test_the_demo_backfills_the_stream_view_and_lists_it_with_its_own_step(applied_example, monkeypatch):
    monkeypatch.setattr(demo, "REPO", applied_example.root)
    groups = demo.materialization_groups()
    first, last = "2026-08-01", (utcnow().date() - timedelta(days=1)).isoformat()
    assert groups[("stream", first, last)] == [demo.STREAM_VIEW]
    batch = {view for (kind, _, _), views in groups.items() if kind == "batch" for view in views}
    assert demo.STREAM_VIEW not in batch and "user_daily_spend" in batch


def test_the_demo_stream_step_and_training_set_show_the_stream_view_in_fraud_detection(
    applied_example, dagster_home, lookup_server, capsys
):
    repo = applied_example
    # The stream view's history, as the demo backfills it: its asset through the real Dagster CLI.
    last = (SMALL_END - timedelta(days=1)).isoformat()
    out = run_dagster(
        [
            "asset",
            "materialize",
            "-m",
            "dagster_project",
            "--select",
            f"*prod/{demo.STREAM_VIEW}",
            "--partition-range",
            f"2026-10-22...{last}",
        ],
        repo,
        dagster_home,
    )
    assert (out.stdout + out.stderr).count("RUN_SUCCESS") == 1

    server = lookup_server(repo)
    rows = demo.show_stream(server.url, "", "", repo.root)

    counts = [int(row["amount_count_5m"]) for row in rows]
    assert counts == [1, 2, 3]  # the user had no payments in the last five minutes; the refund is dropped
    sums = [row["amount_sum_5m"] for row in rows]
    amounts = [amount for amount, _ in demo.STREAM_PAYMENTS]
    assert sums == pytest.approx([sum(amounts[: i + 1]) for i in range(len(amounts))])
    assert [int(row["merchant_id_count_distinct_5m"]) for row in rows] == [1, 1, 2]
    out = capsys.readouterr().out
    assert f"{demo.STREAM_VIEW} for {demo.STREAM_USER}" in out and "Each payment counted" in out
    assert f"{demo.SERVICE} {demo.STREAM_VIEW}.amount_count_5m for {demo.STREAM_USER}: " in out
    assert '"0" before → "3" after 3 payments pushed' in out

    # The processor was stopped by its pid (SIGTERM) and finished its run cleanly.
    log = (repo.root / ".featureplane" / "demo-stream.log").read_text()
    assert "1 dropped by the transformation" in log  # the refund pushed first
    assert "4 batch(es), 3 record(s) applied" in log, log
    assert "Traceback" not in log

    training = demo.show_training_set(rows[-1], repo.root)
    columns = [f"{demo.STREAM_VIEW}__{f}" for f in FEATURES]
    assert set(columns) <= set(training.columns)
    assert "user_transaction_metrics__amount_count_30d" in training.columns  # beside the batch features
    # The last row: the pushed payments, read from the stream's event log, equal what the lookup served.
    pushed = training.iloc[-1]
    assert pushed["user_id"] == demo.STREAM_USER
    assert [pushed[c] for c in columns] == pytest.approx([3, sum(amounts), 2])
    # The row before: the busiest payment of the backfilled history, counted as a brute force over
    # raw.transactions counts the continuous window ending at its time (its minute and the four before).
    busy = training.iloc[-2]
    user, ts, _, _ = demo.busiest_payment(repo.root)
    assert (busy["user_id"], busy["ts"]) == (user, ts)
    window_start = ts.replace(second=0, microsecond=0) - timedelta(minutes=4)
    con = connect_warehouse(repo.config().warehouse_path)
    try:
        expected = con.execute(
            "SELECT COUNT(*), SUM(amount), COUNT(DISTINCT merchant_id) FROM raw.transactions "
            "WHERE user_id = ? AND ts >= ? AND ts <= ? AND amount > 0",
            [user, window_start, ts],
        ).fetchone()
    finally:
        con.close()
    assert expected[0] >= 2  # a burst: the history counts more than the payment itself
    assert [busy[c] for c in columns] == pytest.approx(list(expected))
    out = " ".join(capsys.readouterr().out.split())  # as printed, without the console's line breaks
    assert f"counts {expected[0]} payment(s) from the backfilled history" in out
    assert 'counts 3 from the stream\'s event log, as the lookup API served ("3")' in out
