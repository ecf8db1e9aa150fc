"""A backfill launched the way the Dagster UI launches it (GraphQL against the real webserver, carried out
by the real daemon) runs a range of partitions as a single run per view group."""

from __future__ import annotations

import subprocess
import time
from datetime import date, timedelta

import pytest
from conftest import BIN, ROOT, Server, free_port
from dagster_graphql import LAUNCH, STATUS, graphql

pytestmark = pytest.mark.integration


def test_a_ui_backfill_of_ten_partitions_is_one_run_and_fills_the_stores(
    applied_example, dagster_home, tmp_path
):
    repo = applied_example
    env = {**repo.env, "DAGSTER_HOME": str(dagster_home)}
    # Create the instance's storage first: the webserver and the daemon starting together on a fresh
    # instance can both stamp its SQLite schema version, and neither can then open it.
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    webserver = Server(
        [str(BIN / "dagster-webserver"), "-m", "dagster_project", "-h", "127.0.0.1", "-p", str(port)],
        port,
        env,
        ROOT,
        tmp_path / "webserver.log",
    )
    daemon = Server(
        [str(BIN / "dagster-daemon"), "run", "-m", "dagster_project"], 0, env, ROOT, tmp_path / "daemon.log"
    )
    try:
        webserver.wait_ready("/server_info", timeout=180)
        partitions = [(date(2026, 10, 22) + timedelta(days=i)).isoformat() for i in range(10)]
        launched = graphql(
            webserver.url,
            LAUNCH,
            {
                "params": {
                    "partitionNames": partitions,
                    "assetSelection": [{"path": ["prod", "user_daily_spend"]}],
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        deadline = time.monotonic() + 420
        while True:
            status = graphql(webserver.url, STATUS, {"id": launched["backfillId"]})[
                "partitionBackfillOrError"
            ]
            if status["status"] in (
                "COMPLETED",
                "COMPLETED_SUCCESS",
                "COMPLETED_FAILED",
                "FAILED",
                "CANCELED",
            ):
                break
            assert time.monotonic() < deadline, (status, daemon.log.read_text()[-3000:])
            time.sleep(2)
        assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), (
            status,
            daemon.log.read_text()[-5000:],
        )
        assert status["numPartitions"] == 10
        assert [r["status"] for r in status["runs"]] == ["SUCCESS"]  # ten partitions, one run
    finally:
        daemon.stop()
        webserver.stop()
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    table = runtime.offline_store.read(
        state.table_id("user_daily_spend"), state.feature_view("user_daily_spend")
    )
    assert sorted({d.date().isoformat() for d in table.column("ts").to_pylist()}) == partitions
