"""Crash and concurrency safety, each guarantee shown against real processes.

- A materialization killed with SIGKILL at any point leaves both stores readable with consistent data,
  and a rerun completes it.
- Concurrent materializations (different views, or the same view) do not corrupt each other.
- The lookup server answers every request correctly under sustained load while an apply and a
  materialization happen.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import BIN, SMALL_USERS

from featureplane.materialization.materialize import materialize

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
VIEW = "user_daily_spend"
START, END = datetime(2026, 10, 22), datetime(2026, 11, 1)
MID = datetime(2026, 10, 27)
KEYS = [(f"user_{i}",) for i in range(SMALL_USERS)]


def offline_rows(runtime, state, view: str = VIEW) -> list[tuple]:
    table = runtime.offline_store.read(state.table_id(view), state.feature_view(view))
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def online_rows(runtime, state, view: str = VIEW) -> dict[tuple, tuple]:
    values = runtime.online_store.read([(state.table_id(view), key) for key in KEYS])
    return {key: (v.event_ts, v.values) for key, v in zip(KEYS, values, strict=True) if v is not None}


def projection(rows: list[tuple]) -> dict[tuple, tuple]:
    latest: dict[tuple, tuple] = {}
    for row in sorted(rows, key=lambda r: r[1]):
        stamp = int((row[1] - datetime(1970, 1, 1)).total_seconds() * 1_000_000)
        values = [v.isoformat() + "Z" if isinstance(v, datetime) else v for v in row[2:]]
        latest[(row[0],)] = (stamp, values)
    return latest


def crash(repo, point: str, start: datetime = START, end: datetime = END) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(HERE / "crash_runner.py"),
            str(repo.config_path),
            "prod",
            VIEW,
            start.isoformat(),
            end.isoformat(),
            point,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("point", ["offline_write", "before_online", "online_write"])
def test_sigkill_mid_materialization_keeps_stores_readable_and_a_rerun_completes(applied_example, point):
    repo = applied_example
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    view = state.feature_view(VIEW)
    materialize(runtime, state, VIEW, START, MID)
    previous_offline = offline_rows(runtime, state)
    previous_version = runtime.offline_store.version(state.table_id(VIEW))
    previous_online = online_rows(runtime, state)
    expected = runtime.engine.run_transformation(view, state.definitions.sources, START, END)
    expected_rows = sorted(zip(*(expected.column(c).to_pylist() for c in expected.column_names), strict=True))
    runtime.close()

    killed = crash(repo, point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert "completed" not in killed.stdout

    runtime = repo.runtime()
    after_offline = offline_rows(runtime, state)
    after_online = online_rows(runtime, state)
    if point == "offline_write":
        # Data files were written but never committed: the table still reads as before.
        table_dir = runtime.config.offline_path / state.table_id(VIEW)
        committed = committed_files(table_dir)
        on_disk = {str(p.relative_to(table_dir)) for p in table_dir.rglob("*.parquet")}
        assert on_disk - committed, "the kill came after the commit: nothing was left half-written"
        assert runtime.offline_store.version(state.table_id(VIEW)) == previous_version
        assert after_offline == previous_offline
        assert after_online == previous_online
    elif point == "before_online":
        assert after_offline == expected_rows
        assert after_online == previous_online
    else:
        assert after_offline == expected_rows
        new_online = projection(expected_rows)
        changed = [k for k in after_online if after_online[k] != previous_online.get(k)]
        assert changed, "the kill came before any online batch"
        for key, value in after_online.items():
            assert value in (previous_online.get(key), new_online.get(key)), key

    result = materialize(runtime, state, VIEW, START, END)
    assert offline_rows(runtime, state) == expected_rows
    assert online_rows(runtime, state) == projection(expected_rows)
    assert result.online_full_sync is (point != "offline_write")


def committed_files(table_dir: Path) -> set[str]:
    """Data files the Delta log references (relative to the table)."""
    from deltalake import DeltaTable

    return {
        str(Path(uri.removeprefix("file://")).relative_to(table_dir))
        for uri in DeltaTable(str(table_dir)).file_uris()
    }


def test_concurrent_materializations_do_not_corrupt_each_other(applied_example):
    repo = applied_example
    commands = [
        ["materialize", VIEW, "--start", START.isoformat(), "--end", END.isoformat(), "-w", "prod"],
        ["materialize", "user_profile", "--start", "2026-08-01", "--end", END.isoformat(), "-w", "prod"],
        ["materialize", VIEW, "--start", MID.isoformat(), "--end", END.isoformat(), "-w", "prod"],
        ["materialize", VIEW, "--start", START.isoformat(), "--end", MID.isoformat(), "-w", "prod"],
    ]
    processes = [
        subprocess.Popen(
            [str(BIN / "featureplane"), *c],
            cwd=repo.root,
            env=repo.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, out + err
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    for view, start in ((VIEW, START), ("user_profile", datetime(2026, 8, 1))):
        spec = state.feature_view(view)
        expected = runtime.engine.run_transformation(spec, state.definitions.sources, start, END)
        rows = sorted(zip(*(expected.column(c).to_pylist() for c in expected.column_names), strict=True))
        assert offline_rows(runtime, state, view) == rows
        assert online_rows(runtime, state, view) == projection(rows)


LOAD_SECONDS = float(os.environ.get("FEATUREPLANE_LOAD_SECONDS", "60"))
# The batch views of fraud_detection (its realtime view reads the request's amount and the aggregates).
SERVED_VIEWS = (VIEW, "user_profile", "user_transaction_metrics")
AGE = 5  # user_profile's first feature, after user_daily_spend's five


def test_lookup_server_answers_every_request_during_apply_and_materialization(
    applied_example, lookup_server, record_property
):
    repo = applied_example
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    for view in SERVED_VIEWS:
        materialize(runtime, state, view, datetime(2026, 8, 1), END)
    server = lookup_server(repo)
    users = [f"user_{i}" for i in range(0, SMALL_USERS, 7)]
    body = lambda user: json.dumps(  # noqa: E731
        {
            "params": {
                "workspaceName": "prod",
                "featureServiceName": "fraud_detection",
                "joinKeyMap": {"user_id": user},
                "requestContextMap": {"amount": 100.0},
            }
        }
    )

    def ask(connection: http.client.HTTPConnection, user: str) -> tuple[int, dict]:
        connection.request(
            "POST", "/api/v1/feature-service/get-features", body(user), {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    baseline_connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    baseline = {u: ask(baseline_connection, u)[1] for u in users}
    assert all(b["result"]["features"][AGE] is not None for b in baseline.values())

    stop = threading.Event()
    latencies: list[float] = []
    errors: list[str] = []

    def load() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        i = 0
        while not stop.is_set():
            user = users[i % len(users)]
            i += 1
            started = time.perf_counter()
            try:
                status, answer = ask(connection, user)
            except Exception as exc:  # a dropped connection is an error too
                errors.append(repr(exc))
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                continue
            latencies.append(time.perf_counter() - started)
            if status != 200 or answer != baseline[user]:
                errors.append(f"{user}: {status} {answer}")

    threads = [threading.Thread(target=load) for _ in range(4)]
    load_started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(LOAD_SECONDS / 4)
        # An apply: a new feature service and an in-place update of a view, while serving.
        (repo.root / "more_services.py").write_text(
            "from feature_views.users import user_profile\nfrom featureplane import FeatureService\n"
            "profile_only = FeatureService(name='profile_only', features=[user_profile])\n"
        )
        repo.cli("apply", "--yes", "-w", "prod")
        time.sleep(LOAD_SECONDS / 4)
        # A materialization of every partition of the views (same data and the same end, so the aggregate
        # windows end where they did: answers must not change).
        for view in SERVED_VIEWS:
            repo.cli("materialize", view, "-w", "prod", "--start", "2026-08-01", "--end", END.isoformat())
        time.sleep(max(0.0, LOAD_SECONDS - (time.monotonic() - load_started)))
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    ordered = sorted(latencies)
    percentiles = {
        p: ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000 for p in (50, 90, 99, 99.9)
    }
    report = {
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": LOAD_SECONDS,
        "throughput_rps": round(len(latencies) / LOAD_SECONDS, 1),
        **{f"p{p}_ms": round(v, 2) for p, v in percentiles.items()},
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
    }
    print("\nsustained load:", json.dumps(report))
    record_property("sustained_load", report)
    assert not errors, errors[:5]
    assert len(latencies) > 100
    # The service added by the apply is served without a restart (a fresh connection: the server closes
    # idle ones).
    baseline_connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    baseline_connection.request(
        "POST",
        "/api/v1/feature-service/get-features",
        json.dumps(
            {
                "params": {
                    "workspaceName": "prod",
                    "featureServiceName": "profile_only",
                    "joinKeyMap": {"user_id": "user_0"},
                }
            }
        ),
    )
    response = baseline_connection.getresponse()
    assert response.status == 200, response.read()
