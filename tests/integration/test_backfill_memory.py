"""Peak memory of a backfill stays flat as its range grows: materializing 4N daily partitions of a
plain and of an aggregate view of the example (each on a fresh workspace, so each is a first backfill)
may use only a little more memory than N partitions, the aggregate view almost none. Measured as the peak resident memory (VmHWM) of a
subprocess that does nothing else; a ratio of two runs, not a time."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import copy_example_repo, generate_small_data

HERE = Path(__file__).resolve().parent
START = datetime(2026, 8, 1)  # the example's feature_start_time
N = 31  # at least the example's longest window (30 days): online rows then hold a full window at N too
# Enough rows that a range-proportional copy shows: 4N days are about 1.2M tiles (a copy is about 50 MB).
USERS = 8_000
# Peak(4N) / peak(N) at most this, over a base of about 500 MB (the imports). The plain view's rows are
# held in Arrow (about 1.14x here); an aggregate view's tiles are staged in a DuckDB file and validated a
# few partitions at a time (monitoring.quality.chunk_rows, small here so both ranges take several groups):
# about 1.045x, the rest being DuckDB's buffers filling up to their limits. A regression to a copy of the
# range's rows (or a per-partition leak) exceeds it.
MAX_GROWTH = {"user_daily_spend": 1.2, "user_transaction_metrics": 1.1}
CHUNK_ROWS = 50_000


def peak(repo, workspace: str, view: str, days: int) -> dict:
    end = START + timedelta(days=days)
    out = subprocess.run(
        [sys.executable, str(HERE / "materialize_peak.py"), workspace, view, str(START), str(end)],
        env=repo.env,
        cwd=repo.root,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = copy_example_repo(tmp_path_factory.mktemp("memory") / "feature_repo", dbt=False)
    repo.set_config("engine", memory_limit="200MB", threads=2)
    repo.set_config("monitoring", quality={"chunk_rows": CHUNK_ROWS})
    generate_small_data(repo, users=USERS, days=4 * N + 1, end=date(2026, 8, 1) + timedelta(days=4 * N))
    for workspace in ("short", "long"):
        repo.cli("workspace", "create", workspace, "--live")
        repo.cli("apply", "-w", workspace, "--yes")
    return repo


@pytest.mark.parametrize("view", ["user_daily_spend", "user_transaction_metrics"])
def test_peak_memory_stays_flat_as_the_range_grows(repo, view):
    short = peak(repo, "short", view, N)
    long = peak(repo, "long", view, 4 * N)
    assert long["partitions"] == 4 * short["partitions"]
    assert long["rows"] > 3 * short["rows"]  # the longer range really holds about 4x the rows
    assert long["peak_mb"] <= MAX_GROWTH[view] * short["peak_mb"], (short, long)
