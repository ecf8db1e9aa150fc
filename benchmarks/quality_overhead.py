"""Data-quality overhead: materializing a partition with Great Expectations validation vs without it.

    .venv/bin/python benchmarks/quality_overhead.py [--users 10000] [--days 14] [--repeat 3]

The example repository (its two daily views with their declared expectations, plus the defaults every
view gets) is applied to a throwaway workspace over generated data. For every partition, the arms run
side by side, interleaved, ``--repeat`` times each:

- ``plain``: ``materialize`` with no validators (the floor: transform, offline write, online update);
- ``gx``: ``materialize`` with the GX validator, as the Dagster asset runs it;
- ``gx+profile``: the same plus the per-partition profiler.

Reruns of a partition are idempotent, so each arm does the same work. Then one range run of every
partition, with and without validation. The one-off cost of importing Great Expectations in a fresh
process is measured apart. Results are medians; ratios are to ``plain`` of the same run. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
project: bench
data_dir: .featureplane
monitoring: {serving_stats: {enabled: false}, serving_log: {enabled: false}}
"""


def setup(workdir: Path, users: int, days: int, end: date):
    from featureplane.config import load_config
    from featureplane.examples.fraud_data import DatasetSize, generate
    from featureplane.repo.planning import apply_plan, plan_repository
    from featureplane.runtime import Runtime

    repo = workdir / "feature_repo"
    # Without the views built on dbt: the benchmark's warehouse has only the raw tables.
    shutil.copytree(
        ROOT / "feature_repo",
        repo,
        ignore=shutil.ignore_patterns(".featureplane", "__pycache__", "dbt_features"),
    )
    (repo / "featureplane.yaml").write_text(CONFIG)
    config = load_config(repo)
    counts = generate(config.warehouse_path, size=DatasetSize(users=users, days=days), end=end)
    runtime = Runtime(config)
    runtime.registry.create_workspace("bench", live=True)
    apply_plan(runtime, plan_repository(runtime, "bench"))
    return runtime, counts


def gx_import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import great_expectations; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from featureplane.materialization.materialize import materialize
    from featureplane.materialization.partitions import windows
    from featureplane.monitoring.profiles import PartitionProfiler
    from featureplane.monitoring.quality import GXValidator

    end = date(2026, 11, 1)
    workdir = Path(tempfile.mkdtemp(prefix="fp-quality-bench-"))
    try:
        runtime, counts = setup(workdir, args.users, args.days, end)
        state = runtime.registry.load("bench")
        first = end - timedelta(days=args.days)
        validator = GXValidator()
        import_seconds = gx_import_seconds()
        arms = {
            "plain": lambda: [],
            "gx": lambda: [validator],
            "gx+profile": lambda: [validator, PartitionProfiler()],
        }
        print(
            f"{counts['transactions']:,} transactions, {args.users:,} users, {args.days} daily partitions per view; "
            f"repeat {args.repeat}"
        )
        rows = []
        for view_name in ("user_daily_spend", "user_profile"):
            view = state.feature_view(view_name)
            parts = list(windows(view, _dt(first), _dt(end)))
            materialize(
                runtime, state, view_name, parts[0][0], parts[-1][1], validators=[validator]
            )  # warm up
            times: dict[str, list[float]] = {arm: [] for arm in arms}
            rows_per_partition = []
            for start, stop in parts:
                for _ in range(args.repeat):
                    for arm, validators in arms.items():
                        clock = time.perf_counter()
                        result = materialize(runtime, state, view_name, start, stop, validators=validators())
                        times[arm].append(time.perf_counter() - clock)
                rows_per_partition.append(result.rows)
            ranged = {}
            for arm in ("plain", "gx"):
                clock = time.perf_counter()
                materialize(runtime, state, view_name, parts[0][0], parts[-1][1], validators=arms[arm]())
                ranged[arm] = time.perf_counter() - clock
            rows.append((view_name, statistics.median(rows_per_partition), times, ranged, len(parts)))
        print()
        print(report(rows, import_seconds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _dt(day: date):
    from datetime import datetime

    return datetime(day.year, day.month, day.day)


def report(rows, import_seconds: float) -> str:
    lines = [
        "| view | rows/partition | plain (ms) | gx (ms) | gx+profile (ms) | gx overhead (ms) | gx / plain "
        "| gx+profile / plain | range run: plain (s) | range run: gx (s) | range gx / plain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for view, per_partition, times, ranged, partitions in rows:
        plain, gx, profiled = (statistics.median(times[a]) for a in ("plain", "gx", "gx+profile"))
        lines.append(
            f"| {view} | {per_partition:,.0f} | {plain * 1000:.0f} | {gx * 1000:.0f} | {profiled * 1000:.0f} "
            f"| {(gx - plain) * 1000:.0f} | {gx / plain:.2f}x | {profiled / plain:.2f}x "
            f"| {ranged['plain']:.2f} | {ranged['gx']:.2f} | {ranged['gx'] / ranged['plain']:.2f}x "
            f"({partitions} partitions) |"
        )
    lines.append("")
    lines.append(
        textwrap.fill(
            f"Importing great_expectations in a fresh process: {import_seconds:.1f} s, paid once per process "
            "that validates (each `dagster asset materialize` run, each `featureplane materialize`).",
            100,
        )
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
