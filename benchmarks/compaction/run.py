"""Training queries on a Delta table after many small commits, after compaction, and written at once.

    .venv/bin/python benchmarks/compaction/run.py              # 1,000 daily commits; updates the README table
    .venv/bin/python benchmarks/compaction/run.py --commits 200 --no-readme

One plain daily feature view, stored by the Delta offline store three ways with the same rows:

- **1,000 commits**: one ``write_window`` per day, as a year and a half of daily materializations leave it;
- **compacted**: a copy of that table after the maintenance job's ``compact`` (Z-ordered by the join
  key) and ``vacuum`` (0 hours);
- **one commit**: the whole range written by a single ``write_window`` (the floor).

Each arm runs the same ``get_historical_features`` (the store's point-in-time join over a spine of
random users and times) in this process, interleaved and repeated; medians are reported with the ratio
to the one-commit table, and the outputs are checked equal. Target: compaction within 1.2x of one commit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import ROOT, WORK, fresh_dir, markdown_table, save_results  # noqa: E402

README = ROOT / "benchmarks" / "README.md"
START = datetime(2023, 1, 1)
MARKERS = ("<!-- compaction:start -->", "<!-- compaction:end -->")


def view_spec():
    from featureplane.definitions.specs import FeatureSpec, FeatureViewSpec, FieldSpec

    return FeatureViewSpec(
        "user_spend",
        "batch",
        entities=["user"],
        join_keys=[FieldSpec("user_id", "string")],
        sources=["events"],
        features=[FeatureSpec("amount", "float64"), FeatureSpec("orders", "int64")],
        timestamp_field="ts",
        feature_start_time=START.isoformat() + "Z",
        batch_schedule_seconds=86400,
        ttl_seconds=30 * 86400,
    )


def day_rows(day: int, users: int):
    """Each user's row of one day (a time within the day, deterministic values)."""
    import pyarrow as pa

    base = START + timedelta(days=day)
    return pa.table(
        {
            "user_id": [f"user_{u:05d}" for u in range(users)],
            "ts": pa.array(
                [base + timedelta(seconds=(u * 7919 + day * 104729) % 86400) for u in range(users)],
                pa.timestamp("us"),
            ),
            "amount": [float((u * 31 + day * 17) % 997) / 10 for u in range(users)],
            "orders": [(u + day) % 13 for u in range(users)],
        }
    )


def spine(rows: int, users: int, days: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    seconds = rng.integers(0, days * 86400, rows)
    return pd.DataFrame(
        {
            "user_id": [f"user_{u:05d}" for u in rng.integers(0, users, rows)],
            "ts": pd.to_datetime(START) + pd.to_timedelta(seconds, unit="s"),
        }
    )


def build(root: Path, commits: int, users: int) -> dict[str, str]:
    """The three tables; returns arm -> table id."""
    import pyarrow as pa

    from featureplane.offline_stores.delta import DeltaOfflineStore

    store = DeltaOfflineStore(path=root)
    view = view_spec()
    began = time.perf_counter()
    for day in range(commits):
        store.write_window(
            "small", view, START + timedelta(days=day), START + timedelta(days=day + 1), day_rows(day, users)
        )
    small_seconds = time.perf_counter() - began
    whole = pa.concat_tables([day_rows(day, users) for day in range(commits)])
    store.write_window("whole", view, START, START + timedelta(days=commits), whole)
    shutil.copytree(store.path("small"), store.path("compacted"))
    began = time.perf_counter()
    store.compact("compacted", view, z_order=True)
    store.vacuum("compacted", retention_hours=0)
    compact_seconds = time.perf_counter() - began
    print(
        f"wrote {commits} commits in {small_seconds:.1f}s; compaction and vacuum took {compact_seconds:.1f}s",
        flush=True,
    )
    return {"small": small_seconds, "compact": compact_seconds}


def query(root: Path, table_id: str, frame):
    from featureplane.offline_stores.base import RetrievalPart
    from featureplane.offline_stores.delta import DeltaOfflineStore

    store = DeltaOfflineStore(path=root)  # a fresh store: no state carried between arms
    view = view_spec()
    began = time.perf_counter()
    out = store.get_historical_features(frame, "ts", [RetrievalPart(view, table_id, ["amount", "orders"])])
    return time.perf_counter() - began, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--spine", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    import pandas as pd

    from featureplane.offline_stores.delta import DeltaOfflineStore

    root = fresh_dir(WORK / "compaction")
    timings = build(root, args.commits, args.users)
    frame = spine(args.spine, args.users, args.commits)
    arms = {
        f"{args.commits:,} small commits": "small",
        "compacted (Z-ordered, vacuumed)": "compacted",
        "one commit": "whole",
    }
    store = DeltaOfflineStore(path=root)
    files = {a: store.table_stats(t) for a, t in arms.items()}
    seconds: dict[str, list[float]] = {a: [] for a in arms}
    outputs = {}
    for name, table_id in arms.items():  # a warm-up run each (file cache, imports)
        outputs[name] = query(root, table_id, frame)[1]
    for _ in range(args.repeat):
        for name, table_id in arms.items():
            seconds[name].append(query(root, table_id, frame)[0])
    reference = outputs["one commit"]
    for out in outputs.values():
        pd.testing.assert_frame_equal(out, reference)
    floor = statistics.median(seconds["one commit"])
    rows = []
    for name in arms:
        median = statistics.median(seconds[name])
        rows.append(
            [
                name,
                f"{files[name].files:,}",
                f"{files[name].bytes / 1e6:.1f}",
                f"{median:.3f}",
                f"{min(seconds[name]):.3f}",
                f"{median / floor:.2f}x",
            ]
        )
    compacted = statistics.median(seconds["compacted (Z-ordered, vacuumed)"]) / floor
    small = statistics.median(seconds[f"{args.commits:,} small commits"]) / floor
    load = round(os.getloadavg()[0], 1)
    text = "\n".join(
        [
            markdown_table(["table", "data files", "MB", "median (s)", "best (s)", "vs one commit"], rows),
            "",
            f"{args.commits:,} daily commits of {args.users:,} users ({args.commits * args.users:,} rows); "
            f"spine of {args.spine:,} rows; median of {args.repeat} interleaved runs per arm (outputs "
            f"equal); writing the commits took {timings['small']:.0f} s, compaction and vacuum "
            f"{timings['compact']:.1f} s; Python {sys.version.split()[0]}, {os.cpu_count()} cores, load "
            f"average {load} at the end; {time.strftime('%Y-%m-%d')}",
            "",
            f"- After {args.commits:,} small commits: {small:.2f}x the one-commit table's time.",
            f"- Compacted: {compacted:.2f}x (target at most 1.2x): **{'met' if compacted <= 1.2 else 'not met'}**.",
        ]
    )
    print(text)
    save_results(
        "compaction",
        {
            "arms": {
                a: {"seconds": seconds[a], "files": files[a].files, "bytes": files[a].bytes} for a in arms
            },
            "build_seconds": timings,
            "parameters": vars(args),
        },
    )
    if not args.no_readme:
        head, rest = README.read_text().split(MARKERS[0], 1)
        _, tail = rest.split(MARKERS[1], 1)
        README.write_text(f"{head}{MARKERS[0]}\n{text}\n{MARKERS[1]}{tail}")


if __name__ == "__main__":
    main()
