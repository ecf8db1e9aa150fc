"""Backfill benchmark: a year of daily partitions of the example repository, side by side in one run.

Arms:
  ours     `dagster asset materialize --partition-range` over every daily partition of the example's
           feature views (the real CLI, Dagster instance, registry, Delta offline store, SQLite online store)
  floor    one hand-written DuckDB query per view + one raw Delta write + one bulk SQLite insert
  publish  the online-publish step alone, latest values of N entities x 10 features into SQLite:
           featureplane's path versus Feast's `feast materialize` (Feast in its own virtualenv)

  aggregate the example's aggregate view (hourly tiles) backfilled the same way, reported on its own
           row: the floor has no tiles, so it does not count against the floor
  postgres ours and Dagster alone again on a production instance (`featureplane dagster-instance`:
           storage on a local PostgreSQL server the benchmark starts), beside the SQLite instance

Peak memory is sampled every 20 ms over the launched process and all its descendants: the larger of
the largest sum of resident memory (VmRSS) over the tree at one sample and the largest high-water mark
(VmHWM) of any single process of the tree.

usage: .venv/bin/python benchmarks/backfill/run.py [--users 10000] [--days 365] [--rate 3.0]
       [--entities 1000000] [--skip-feast] [--skip-aggregate] [--skip-postgres] [--no-readme]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (
    BIN,
    ROOT,
    WORK,
    Measured,
    feast_python,
    fresh_dir,
    markdown_table,
    run_measured,
    save_results,
)

HERE = Path(__file__).resolve().parent
VIEWS = ["user_daily_spend", "user_profile"]
AGGREGATE_VIEWS = ["user_transaction_metrics"]
# featureplane.yaml's engine.memory_limit for our arm: DuckDB spills past it instead of growing.
MEMORY_LIMIT = "400MB"


def prepare_data(users: int, days: int, rate: float) -> tuple[Path, datetime, datetime]:
    """Generate the data once per size (in a child process, so this process stays small and the
    measured children do not inherit its memory)."""
    from featureplane.examples.fraud_data import data_window

    data = WORK / "backfill" / "data"
    warehouse = data / "warehouse.duckdb"
    end = datetime.now(UTC).date()
    params = {"users": users, "days": days, "rate": rate, "end": end.isoformat()}
    stamp = data / "params.json"
    if not (warehouse.exists() and stamp.exists() and json.loads(stamp.read_text()) == params):
        fresh_dir(data)
        config = data / "featureplane.yaml"
        config.write_text(f"project: bench\nengine: {{type: duckdb, warehouse: {warehouse}}}\n")
        run_measured(
            [
                str(BIN / "featureplane"),
                "example",
                "generate",
                "--users",
                str(users),
                "--days",
                str(days),
                "--rate",
                str(rate),
                "--end",
                end.isoformat(),
                "--config",
                str(config),
            ]
        )
        stamp.write_text(json.dumps(params))
    start, stop = data_window(end, days)
    return warehouse, start, stop


def transaction_count(warehouse: Path) -> int:
    import duckdb

    con = duckdb.connect()
    con.execute(f"ATTACH '{warehouse}' AS w (READ_ONLY)").fetchall()
    count = con.sql("SELECT count(*) FROM w.raw.transactions").fetchall()[0][0]
    con.close()
    return count


def repo_copy(warehouse: Path, start: datetime) -> Path:
    """The example repository, reading the benchmark's warehouse, with partitions from the data's start."""
    repo = fresh_dir(WORK / "backfill" / "repo")
    # The example without its dbt-built part (the floor has no dbt): the views over the raw tables.
    shutil.copytree(
        ROOT / "feature_repo",
        repo,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".featureplane", "__pycache__", "dbt_features"),
    )
    config = (repo / "featureplane.yaml").read_text()
    config = config.replace(
        "warehouse: .featureplane/warehouse.duckdb", f"warehouse: {warehouse}\n  memory_limit: {MEMORY_LIMIT}"
    )
    config = re.sub(r"(?m)^dbt:\n(?:  .*\n)+", "", config)
    (repo / "featureplane.yaml").write_text(config)
    for path in repo.rglob("*.py"):
        text = path.read_text()
        if "FEATURE_START = datetime(" in text:
            text = re.sub(
                r"FEATURE_START = datetime\([^)]*\)",
                f"FEATURE_START = datetime({start.year}, {start.month}, {start.day})",
                text,
            )
            path.write_text(text)
    return repo


def dagster_home(path: Path, postgres_dsn: str | None = None) -> Path:
    """A fresh Dagster instance directory: the project's local dagster.yaml (SQLite), or with a DSN the
    production one on PostgreSQL. Its storage is created here, before any measured command, as on a
    deployed instance."""
    from featureplane.util.dagster_instance import instance_config, instance_yaml

    home = fresh_dir(path)
    if postgres_dsn is None:
        shutil.copy(ROOT / "scripts" / "dagster.yaml", home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(instance_yaml(instance_config(postgres_dsn, None)))
    run_measured([str(BIN / "dagster"), "instance", "migrate"], env={**os.environ, "DAGSTER_HOME": str(home)})
    return home


def materialize_range(
    code: list[str], assets: list[str], start: datetime, end: datetime, **run: Any
) -> Measured:
    """``dagster asset materialize`` of ``assets`` from the code location ``code`` (``-m module`` or
    ``-f file``) over the daily partitions of [start, end), measured."""
    last = (end - timedelta(days=1)).strftime("%Y-%m-%d")
    command = [str(BIN / "dagster"), "asset", "materialize", *code, "--select", ",".join(assets)]
    return run_measured([*command, "--partition-range", f"{start:%Y-%m-%d}...{last}"], **run)


def ours_env(repo: Path, postgres_dsn: str | None = None) -> dict:
    """A fresh Dagster instance and a fresh live workspace with the example applied."""
    env = {
        **os.environ,
        "FEATUREPLANE_CONFIG": str(repo / "featureplane.yaml"),
        "DAGSTER_HOME": str(dagster_home(WORK / "backfill" / "dagster", postgres_dsn)),
    }
    featureplane = str(BIN / "featureplane")
    run_measured([featureplane, "workspace", "create", "prod", "--live"], env=env)
    run_measured([featureplane, "apply", "--yes"], env=env)
    return env


def arm_ours(
    repo: Path, start: datetime, end: datetime, views: list[str] = VIEWS, postgres_dsn: str | None = None
) -> dict:
    env = ours_env(repo, postgres_dsn)
    measured = materialize_range(["-m", "dagster_project"], [f"prod/{v}" for v in views], start, end, env=env)
    log = measured.stdout + measured.stderr
    online_rows = sum(
        int(n.replace(",", "")) for n in re.findall(r"online store updated \([^)]*\): ([\d,]+) written", log)
    )
    rows = sum(
        int(n.replace(",", "")) for n in re.findall(r"wrote ([\d,]+) row\(s\) to the offline store", log)
    )
    return {
        "seconds": measured.seconds,
        "peak_rss_mb": measured.peak_rss_mb,
        **measured.extra,
        "phases": phase_seconds(Path(env["DAGSTER_HOME"]), views),
        "dagster_runs": log.count("RUN_START"),
        "offline_rows": rows,
        "online_rows": online_rows,
        "partitions": (end - start).days,
    }


def phase_seconds(home: Path, views: list[str]) -> dict[str, float]:
    """Seconds per phase of featureplane's materialization (transform, validate: GX and profiles,
    offline_write, online_write), summed over the views, as each run recorded them on its latest
    materialization event."""
    import dagster as dg

    totals: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for view in views:
            records = instance.fetch_materializations(dg.AssetKey(["prod", view]), limit=1).records
            metadata = records[0].asset_materialization.metadata if records else {}
            for key, value in metadata.items():
                if key.startswith("seconds_"):
                    totals[key.removeprefix("seconds_")] = totals.get(
                        key.removeprefix("seconds_"), 0.0
                    ) + float(value.value)
    return totals


def phases_text(label: str, arm: dict) -> str:
    phases = arm.get("phases") or {}
    if not phases:
        return ""
    parts = ", ".join(f"{name.replace('_', ' ')} {seconds:.1f} s" for name, seconds in phases.items())
    rest = arm["seconds"] - sum(phases.values())
    return (
        f". Where {label} spends its {arm['seconds']:.1f} s (each run's own timings, summed over the views): "
        f"{parts}; the other {rest:.1f} s are the CLI, loading the code location and Dagster's run and events"
    )


EMPTY_ASSETS = """\
import dagster as dg

partitions = dg.DailyPartitionsDefinition(start_date="{start}", end_date="{end}")


def empty_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def _asset() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    return _asset


defs = dg.Definitions(assets=[empty_asset(name) for name in {views!r}])
"""


def arm_dagster_alone(
    start: datetime, end: datetime, views: list[str] = VIEWS, postgres_dsn: str | None = None
) -> dict:
    """The same command over the same partitions of assets that do nothing: what Dagster itself costs
    (CLI start, run creation, one planned and one materialization event per partition)."""
    work = fresh_dir(WORK / "backfill" / "dagster_alone")
    (work / "empty_assets.py").write_text(
        EMPTY_ASSETS.format(start=f"{start:%Y-%m-%d}", end=f"{end:%Y-%m-%d}", views=list(views))
    )
    home = dagster_home(work / "home", postgres_dsn)
    measured = materialize_range(
        ["-f", str(work / "empty_assets.py")],
        list(views),
        start,
        end,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        cwd=work,
    )
    return {"seconds": measured.seconds, "peak_rss_mb": measured.peak_rss_mb, **measured.extra}


def arms_on_postgres(warehouse: Path, start: datetime, end: datetime) -> dict:
    """Ours and Dagster alone on a production instance, each on a fresh database of one local server."""
    import tempfile

    from featureplane.util.local_postgres import LocalPostgres

    directory = Path(tempfile.mkdtemp(prefix="featureplane-bench-postgres-"))
    server = LocalPostgres(directory)
    try:
        server.start()
        print("arm ours on a PostgreSQL instance...", file=sys.stderr, flush=True)
        ours = arm_ours(repo_copy(warehouse, start), start, end, postgres_dsn=server.database())
        print(json.dumps(ours), file=sys.stderr, flush=True)
        print("arm Dagster alone on a PostgreSQL instance...", file=sys.stderr, flush=True)
        alone = arm_dagster_alone(start, end, postgres_dsn=server.database())
        print(json.dumps(alone), file=sys.stderr, flush=True)
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return {"ours_postgres": ours, "dagster_alone_postgres": alone}


def arm_floor(warehouse: Path, start: datetime, end: datetime) -> dict:
    out = fresh_dir(WORK / "backfill" / "floor")
    measured = run_measured(
        [sys.executable, str(HERE / "floor.py"), str(warehouse), str(out), str(start), str(end)]
    )
    return {
        "seconds": measured.seconds,
        "peak_rss_mb": measured.peak_rss_mb,
        **measured.extra,
        **json.loads(measured.stdout.strip().splitlines()[-1]),
    }


def publish_data(entities: int) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = WORK / "backfill" / f"publish-{entities}.parquet"
    if not path.exists():
        rng = np.random.default_rng(3)
        columns = {
            "user_id": pa.array([f"user_{i}" for i in range(entities)]),
            "ts": pa.array(np.full(entities, np.datetime64("2026-01-01T00:00:00", "us"))),
        }
        columns.update({f"f{i}": pa.array(rng.random(entities)) for i in range(10)})
        pq.write_table(pa.table(columns), path)
    return path


def arm_publish(entities: int, skip_feast: bool) -> dict:
    parquet = publish_data(entities)
    ours = run_measured(
        [
            sys.executable,
            str(HERE / "publish_ours.py"),
            str(parquet),
            str(fresh_dir(WORK / "backfill" / "publish_ours")),
        ]
    )
    result = {"entities": entities, "ours": json.loads(ours.stdout.strip().splitlines()[-1])}
    result["ours"]["peak_rss_mb"] = ours.peak_rss_mb
    if not skip_feast:
        feast = run_measured(
            [
                str(feast_python()),
                str(HERE / "publish_feast.py"),
                str(parquet),
                str(fresh_dir(WORK / "backfill" / "publish_feast")),
            ]
        )
        result["feast"] = json.loads(feast.stdout.strip().splitlines()[-1])
        result["feast"]["peak_rss_mb"] = feast.peak_rss_mb
    return result


def report(results: dict) -> str:
    ours, floor, publish = results["ours"], results["floor"], results["publish"]
    rows = [
        [
            "ours: `dagster asset materialize --partition-range`",
            f"{ours['seconds']:.1f}",
            f"{ours['seconds'] / floor['seconds']:.2f}x",
            f"{ours['peak_rss_mb']:.0f}",
            ours["dagster_runs"],
            f"{ours['online_rows']:,}",
        ],
        [
            "floor: hand-written DuckDB + raw Delta + bulk SQLite",
            f"{floor['seconds']:.1f}",
            "1.00x",
            f"{floor['peak_rss_mb']:.0f}",
            "-",
            f"{floor['online_rows']:,}",
        ],
    ]
    if "dagster_alone" in results:
        alone = results["dagster_alone"]
        rows.append(
            [
                "Dagster alone: the same command over the same partitions of two assets that do nothing",
                f"{alone['seconds']:.1f}",
                f"{alone['seconds'] / floor['seconds']:.2f}x",
                f"{alone['peak_rss_mb']:.0f}",
                1,
                "-",
            ]
        )
    for key, label in (("ours_postgres", "ours"), ("dagster_alone_postgres", "Dagster alone")):
        if key in results:
            arm = results[key]
            rows.append(
                [
                    f"{label}, on a PostgreSQL instance (`featureplane dagster-instance`)",
                    f"{arm['seconds']:.1f}",
                    f"{arm['seconds'] / floor['seconds']:.2f}x",
                    f"{arm['peak_rss_mb']:.0f}",
                    arm.get("dagster_runs", 1),
                    f"{arm['online_rows']:,}" if "online_rows" in arm else "-",
                ]
            )
    if "aggregate" in results:
        agg = results["aggregate"]
        rows.append(
            [
                f"extra, not counted against the floor: aggregate view {', '.join(AGGREGATE_VIEWS)} "
                "(hourly tiles), same command",
                f"{agg['seconds']:.1f}",
                "-",
                f"{agg['peak_rss_mb']:.0f}",
                agg["dagster_runs"],
                f"{agg['online_rows']:,}",
            ]
        )
    table = markdown_table(
        ["backfill arm", "wall s", "vs floor", "peak MB", "Dagster runs", "online rows"], rows
    )
    o = publish["ours"]
    publish_rows = [
        [
            "featureplane online publish (SQLite)",
            f"{o['rows']:,}",
            f"{o['seconds']:.1f}",
            f"{o['rows'] / o['seconds']:,.0f}",
            "1.00x",
        ]
    ]
    if "feast" in publish:
        f = publish["feast"]
        ratio = (o["rows"] / o["seconds"]) / (f["rows"] / f["seconds"])
        publish_rows.append(
            [
                "Feast `feast materialize` (SQLite)",
                f"{f['rows']:,}",
                f"{f['seconds']:.1f}",
                f"{f['rows'] / f['seconds']:,.0f}",
                f"ours is {ratio:.1f}x faster",
            ]
        )
    publish_table = markdown_table(
        ["online publish of latest values, 10 features", "entities", "seconds", "rows/s", "ratio"],
        publish_rows,
    )
    data = results["data"]
    peaks = [("plain views", ours["peak_rss_mb"])]
    if "aggregate" in results:
        peaks.append(("aggregate view", results["aggregate"]["peak_rss_mb"]))
    targets = (
        "Targets: at most 1 GiB peak memory for every view kind ("
        + ", ".join(f"{kind} {mb:.0f} MB: {'met' if mb <= 1024 else 'missed'}" for kind, mb in peaks)
        + ")"
    )
    if "dagster_alone" in results:
        share = (ours["seconds"] - results["dagster_alone"]["seconds"]) / floor["seconds"]
        targets += (
            f", our share (ours minus Dagster alone) at most 1.0x the floor ({share:.2f}x: "
            f"{'met' if share <= 1.0 else 'missed'})"
        )
    if "feast" in publish:
        f = publish["feast"]
        ratio = (o["rows"] / o["seconds"]) / (f["rows"] / f["seconds"])
        targets += f", online publish at least 10x Feast's rows/s ({ratio:.1f}x: {'met' if ratio >= 10 else 'missed'})"
    if "dagster_alone" in results:
        alone = results["dagster_alone"]["seconds"]
        targets += (
            f". Dagster alone, with no work, takes {alone / floor['seconds']:.2f}x the floor; ours spends "
            f"{ours['seconds'] - alone:.1f} s beyond it ({(ours['seconds'] - alone) / floor['seconds']:.2f}x "
            "the floor)"
        )
    if "dagster_alone_postgres" in results and "ours_postgres" in results:
        pg_alone, pg_ours = results["dagster_alone_postgres"]["seconds"], results["ours_postgres"]["seconds"]
        per = ours["partitions"] * len(VIEWS)
        targets += (
            f". On PostgreSQL, Dagster alone takes {pg_alone / floor['seconds']:.2f}x the floor and ours spends "
            f"{pg_ours - pg_alone:.1f} s beyond it ({(pg_ours - pg_alone) / floor['seconds']:.2f}x the floor; "
            "target at most 1.00x). Dagster's own cost per partition and asset: "
            f"{1000 * results['dagster_alone']['seconds'] / per:.1f} ms on SQLite, {1000 * pg_alone / per:.1f} ms on "
            "PostgreSQL"
        )
    targets += phases_text("ours (SQLite instance)", ours)
    if "ours_postgres" in results:
        targets += phases_text("ours (PostgreSQL instance)", results["ours_postgres"])
    if "aggregate" in results:
        targets += phases_text("the aggregate view's backfill", results["aggregate"])
    return (
        f"{data['transactions']:,} transactions, {data['users']:,} users, {data['days']} daily partitions per view "
        f"({', '.join(VIEWS)}), measured {results['measured_at']}. The floor and the first row cover the same "
        "plain daily views; the aggregate view's tiles are not in the floor, so its backfill is an extra row. "
        "Peak MB is sampled every 20 ms over the launched process and all its descendants: the larger of the "
        "largest sum of resident memory (VmRSS) over the process tree at one sample and the largest "
        "high-water mark (VmHWM) of any single process in it.\n\n"
        f"{table}\n\n{publish_table}\n\n{targets}.\n"
    )


def update_readme(section: str) -> None:
    readme = ROOT / "benchmarks" / "README.md"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    begin, end = "<!-- backfill:begin -->", "<!-- backfill:end -->"
    block = f"{begin}\n{section}{end}"
    text = (
        re.sub(f"{begin}.*?{end}", block, text, flags=re.S)
        if begin in text
        else text.rstrip() + f"\n\n## Backfill\n\n{block}\n"
    )
    readme.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rate", type=float, default=3.0, help="mean transactions per user per day")
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument(
        "--skip-aggregate", action="store_true", help="do not backfill the aggregate view (extra row)"
    )
    parser.add_argument(
        "--skip-postgres",
        action="store_true",
        help="no PostgreSQL-instance arms (they need PostgreSQL's server)",
    )
    parser.add_argument(
        "--no-readme", action="store_true", help="print the table without updating benchmarks/README.md"
    )
    args = parser.parse_args()

    warehouse, start, end = prepare_data(args.users, args.days, args.rate)
    params = json.loads((warehouse.parent / "params.json").read_text())
    params["transactions"] = transaction_count(warehouse)
    repo = repo_copy(warehouse, start)
    print("arm ours (Dagster CLI)...", file=sys.stderr, flush=True)
    ours = arm_ours(repo, start, end)
    print(json.dumps(ours), file=sys.stderr, flush=True)
    print("arm floor...", file=sys.stderr, flush=True)
    floor = arm_floor(warehouse, start, end)
    print(json.dumps(floor), file=sys.stderr, flush=True)
    print("arm Dagster alone...", file=sys.stderr, flush=True)
    dagster_alone = arm_dagster_alone(start, end)
    print(json.dumps(dagster_alone), file=sys.stderr, flush=True)
    postgres = {}
    if not args.skip_postgres:
        postgres = arms_on_postgres(warehouse, start, end)
    aggregate = None
    if not args.skip_aggregate:
        print("aggregate view (extra row)...", file=sys.stderr, flush=True)
        aggregate = arm_ours(repo_copy(warehouse, start), start, end, AGGREGATE_VIEWS)
        print(json.dumps(aggregate), file=sys.stderr, flush=True)
    print("online publish arms...", file=sys.stderr, flush=True)
    publish = arm_publish(args.entities, args.skip_feast)
    results = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d"),
        "data": params,
        "ours": ours,
        "floor": floor,
        "dagster_alone": dagster_alone,
        "publish": publish,
        **postgres,
    }
    if aggregate is not None:
        results["aggregate"] = aggregate
    save_results("backfill", results)
    section = report(results)
    print(section)
    if not args.no_readme:
        update_readme(section)


if __name__ == "__main__":
    main()
