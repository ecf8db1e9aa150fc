"""Point-in-time training sets: featureplane against a hand-written DuckDB ASOF JOIN (the floor), a naive
range join for aggregates, and Feast's get_historical_features (its DuckDB and file offline stores).

    .venv/bin/python benchmarks/point_in_time/run.py            # 1,000,000 spine rows, all arms
    .venv/bin/python benchmarks/point_in_time/run.py --quick    # 50,000 spine rows, a smaller dataset

Every arm runs in its own process on the same data and spine (timed around the retrieval call only;
peak memory is the process's maximum resident set), writes its training set, and the outputs are
compared: plain views against the floor, aggregates against the naive range join. An arm that cannot
finish within its time limit is rerun on a tenth of the spine, and its comparisons are made at that
size (stated in the table). Feast runs in its own virtualenv, installed on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from data import EXPORT, PLAIN, ROOT, WORK, parameters, prepare  # noqa: E402

FEAST_VERSION = "0.67.0"
FEAST_VENV = ROOT / "benchmarks" / ".work" / f"feast-{FEAST_VERSION}-duckdb"  # with its DuckDB offline store
README = ROOT / "benchmarks" / "README.md"
RESULTS = ROOT / "benchmarks" / "results" / "point_in_time.json"
# What each arm's output is checked against (on the same spine).
REFERENCES = {
    "featureplane_plain": "floor_asof",
    "featureplane_aggregates": "naive_range_join",
    "feast_duckdb": "floor_asof",
    "feast_file": "floor_asof",
}
AGGREGATES = [
    *(f"amount_count_{w}" for w in ("1h", "1d", "7d", "30d")),
    *(f"amount_sum_{w}" for w in ("1h", "1d", "7d", "30d")),
    "amount_mean_30d",
    "amount_stddev_samp_30d",
]


# -- arms (each runs in its own process) ---------------------------------------------------------


def _spine(path: Path, rows: int):
    import pandas as pd

    spine = pd.read_parquet(path)
    step = max(1, len(spine) // rows)
    return spine.iloc[::step].head(rows).reset_index(drop=True)


def _delta(con, name: str, table_id: str, config) -> None:
    from deltalake import DeltaTable

    con.register(name, DeltaTable(str(config.offline_path / table_id)).to_pyarrow_dataset())


def floor_asof(spine, prepared):
    """The floor: one hand-written ASOF JOIN per view over the stored rows, ttl as a CASE."""
    import duckdb

    from featureplane.config import load_config

    config = load_config(prepared["config"])
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'").fetchall()
    _delta(con, "daily", prepared["tables"]["user_daily_spend"], config)
    _delta(con, "profile", prepared["tables"]["user_profile"], config)
    con.register("spine", spine)
    daily = ", ".join(
        f"CASE WHEN d.ts > s.ts - INTERVAL 1 DAY THEN d.{f} END AS user_daily_spend__{f}"
        for f in PLAIN["user_daily_spend"]
    )
    profile = ", ".join(f"p.{f} AS user_profile__{f}" for f in PLAIN["user_profile"])
    started = time.perf_counter()
    out = con.sql(
        f"SELECT s.user_id, s.ts, {daily}, {profile} FROM spine AS s "
        "ASOF LEFT JOIN daily AS d ON s.user_id = d.user_id AND s.ts >= d.ts "
        "ASOF LEFT JOIN profile AS p ON s.user_id = p.user_id AND s.ts >= p.updated_at"
    ).df()
    return out, time.perf_counter() - started


def _featureplane(service: str):
    def arm(spine, prepared):
        import featureplane

        workspace = featureplane.get_workspace("bench", config=prepared["config"])
        handle = workspace.get_feature_service(service)
        started = time.perf_counter()
        out = handle.get_historical_features(spine, timestamp_key="ts")
        return out, time.perf_counter() - started

    return arm


def naive_range_join(spine, prepared):
    """What one writes by hand for windowed aggregates: join every event of the longest window, then
    aggregate per spine row with a filter per window."""
    import duckdb

    from featureplane.config import load_config

    config = load_config(prepared["config"])
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'").fetchall()
    con.execute(f"ATTACH '{config.warehouse_path}' AS warehouse (READ_ONLY)").fetchall()
    con.register("spine_in", spine)
    hours = {"1h": 1, "1d": 24, "7d": 168, "30d": 720}
    counts = [
        f"count(e.amount) FILTER (WHERE e.ts >= s.t - INTERVAL {h} HOUR) AS amount_count_{w}"
        for w, h in hours.items()
    ]
    sums = [
        f"COALESCE(sum(e.amount) FILTER (WHERE e.ts >= s.t - INTERVAL {h} HOUR), 0) AS amount_sum_{w}"
        for w, h in hours.items()
    ]
    started = time.perf_counter()
    out = con.sql(
        "WITH s AS (SELECT row_number() OVER () AS row_id, user_id, ts, date_trunc('hour', ts) AS t FROM spine_in) "
        f"SELECT any_value(s.user_id) AS user_id, any_value(s.ts) AS ts, {', '.join(counts + sums)}, "
        "avg(e.amount) AS amount_mean_30d, stddev_samp(e.amount) AS amount_stddev_samp_30d "
        "FROM s LEFT JOIN warehouse.raw.transactions AS e "
        "ON e.user_id = s.user_id AND e.ts >= s.t - INTERVAL 720 HOUR AND e.ts < s.t "
        "GROUP BY s.row_id"
    ).df()
    out.columns = [c if c in ("user_id", "ts") else f"user_transaction_metrics__{c}" for c in out.columns]
    return out, time.perf_counter() - started


ARMS = {
    "floor_asof": floor_asof,
    "featureplane_plain": _featureplane("plain_views"),
    "featureplane_aggregates": _featureplane("aggregates"),
    "naive_range_join": naive_range_join,
}


def run_arm(name: str, rows: int, out: Path, repeat: int) -> None:
    """Run an arm ``repeat`` times (fewer when a run takes over a minute) and keep the best time: the
    machine is shared, and the best run is the least disturbed one."""
    prepared = json.loads((WORK / "prepared.json").read_text())
    spine = _spine(WORK / "spine.parquet", rows)
    times = []
    for _ in range(repeat):
        frame, seconds = ARMS[name](spine, prepared)
        times.append(seconds)
        if seconds > 60:
            break
    seconds = min(times)
    peak = peak_mb()
    frame.to_parquet(out, index=False)
    print(json.dumps({"seconds": seconds, "rows": len(frame), "peak_mb": peak}))


def peak_mb() -> float:
    """This process's peak resident memory since it started (``VmHWM``; a fork's parent is not
    counted, unlike ``ru_maxrss``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


# -- orchestration -------------------------------------------------------------------------------


def ensure_feast(say) -> Path:
    python = FEAST_VENV / "bin" / "python"
    probe = [str(python), "-c", f"import feast, sys; sys.exit(feast.__version__ != {FEAST_VERSION!r})"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    say(f"installing Feast {FEAST_VERSION} into {FEAST_VENV.relative_to(ROOT)} (its own virtualenv)")
    base = getattr(sys, "_base_executable", None) or "python3.11"  # the interpreter under this virtualenv
    subprocess.run([base, "-m", "venv", str(FEAST_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"feast[duckdb]=={FEAST_VERSION}"], check=True
    )
    return python


def measure(command: list[str], limit: float) -> dict:
    """Run one arm's process and return its JSON answer (seconds, rows, peak memory)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + limit
    while True:
        pid, status = os.waitpid(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            os.waitpid(process.pid, 0)
            return {"timeout": limit}
        time.sleep(0.05)
    stdout = process.stdout.read().decode()
    stderr = process.stderr.read().decode()
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # killed: its last words are not the reason (SIGKILL is how the kernel ends it on OOM)
        return {"error": f"killed by signal {-code}" + (" (out of memory?)" if -code == 9 else "")}
    if code != 0:
        return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else "failed"}
    return json.loads(stdout.strip().splitlines()[-1])


def compare(reference: Path, other: Path, columns: list[str]) -> dict:
    """Same rows and values? Rows are matched by (user_id, ts), which decide every value."""
    import numpy as np
    import pandas as pd

    a = pd.read_parquet(reference)
    b = pd.read_parquet(other)
    for frame in (a, b):
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None).astype("datetime64[us]")
    keys = ["user_id", "ts"]
    a = a.sort_values(keys).drop_duplicates(keys).set_index(keys)
    b = b.sort_values(keys).drop_duplicates(keys).set_index(keys)
    common = a.index.intersection(b.index)
    differing = 0
    for column in columns:
        x, y = a.loc[common, column], b.loc[common, column]
        if x.dtype.kind in "fiu" or y.dtype.kind in "fiu":
            x, y = x.astype(float).to_numpy(), y.astype(float).to_numpy()
            same = np.isclose(x, y, rtol=1e-9, atol=1e-9, equal_nan=True)
        else:
            same = ((x == y).fillna(False) | (x.isna() & y.isna())).to_numpy(dtype=bool)
        differing = max(differing, int((~same).sum()))
    return {
        "missing": len(a.index) - len(common),
        "extra": len(b.index) - len(common),
        "differing": differing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=1_000_000, help="spine rows (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="50,000 spine rows over a smaller dataset")
    parser.add_argument(
        "--limit", type=float, default=300, help="seconds an arm may take before it is rerun smaller"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per arm; the best time counts (default 3)"
    )
    parser.add_argument("--no-feast", action="store_true", help="skip the Feast arms")
    parser.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    args = parser.parse_args()
    if args.arm:
        run_arm(args.arm, args.rows, Path(args.out), args.repeat)
        return

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    rows = 50_000 if args.quick else args.rows
    params = parameters(users=10_000, days=90, per_day=12_500, zipf=1.0, seed=7)
    if args.quick:
        params = parameters(users=2_000, days=40, per_day=2_000, zipf=1.0, seed=7)
    prepared = prepare(params, rows, say)
    say(f"{prepared['events']:,} events; spine of {rows:,} transactions")
    commands = {name: _ours(name, args.repeat) for name in ARMS}
    if not args.no_feast:
        feast = ensure_feast(say)
        commands.update(
            feast_duckdb=_feast(feast, "duckdb", args.repeat), feast_file=_feast(feast, "file", args.repeat)
        )
    out_dir = WORK / "outputs"
    out_dir.mkdir(exist_ok=True)
    results: dict[str, dict] = {}

    def run(name: str, size: int) -> None:
        """Run an arm; if it does not finish in time, once more on a tenth of the spine."""
        for attempt in (size, size // 10):
            out = out_dir / f"{name}-{attempt}.parquet"
            say(f"arm {name} on {attempt:,} spine rows")
            result = measure(commands[name](attempt, out), args.limit)
            result.update(spine_rows=attempt, output=str(out))
            results[name if attempt == rows else f"{name}@{attempt}"] = result
            if "timeout" not in result:
                return
            say(f"  did not finish within {args.limit:.0f} s")

    for name in commands:
        run(name, rows)
    # Compare like with like: an arm that fell back to a smaller spine is compared with its reference and
    # the floor on that spine, and an arm whose reference fell back is run on the reference's spine too.
    for name, reference in REFERENCES.items():
        if name not in commands:
            continue
        sizes = {
            r["spine_rows"]
            for k, r in results.items()
            if k.split("@")[0] in (name, reference) and "seconds" in r
        }
        for size in sorted(sizes, reverse=True):
            for needed in (name, reference, "floor_asof"):
                if not _tried(results, needed, size):
                    out = out_dir / f"{needed}-{size}.parquet"
                    say(f"arm {needed} on {size:,} spine rows (to compare like with like)")
                    results[f"{needed}@{size}"] = {
                        **measure(commands[needed](size, out), args.limit),
                        "spine_rows": size,
                        "output": str(out),
                    }

    checks = {}
    for key, result in results.items():
        name = key.split("@")[0]
        if name not in REFERENCES or "seconds" not in result:
            continue
        reference = _at(results, REFERENCES[name], result["spine_rows"])
        if reference is None:
            continue
        columns = AGGREGATE_COLUMNS if name == "featureplane_aggregates" else PLAIN_COLUMNS
        checks[key] = compare(Path(results[reference]["output"]), Path(result["output"]), columns)
    for result in results.values():  # the saved results name outputs relative to the checkout
        if "output" in result and Path(result["output"]).is_relative_to(ROOT):
            result["output"] = str(Path(result["output"]).relative_to(ROOT))
    report = {
        "parameters": prepared["parameters"],
        "events": prepared["events"],
        "results": results,
        "checks": checks,
        "environment": environment(),
        "repeat": args.repeat,
    }
    (WORK / "results.json").write_text(json.dumps(report, indent=2))
    text = table(report)
    print(text)
    if not args.no_readme and not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        update_readme(text)


PLAIN_COLUMNS = [f"{v}__{f}" for v, fs in PLAIN.items() for f in fs]
AGGREGATE_COLUMNS = [f"user_transaction_metrics__{f}" for f in AGGREGATES]


def _ours(name: str, repeat: int):
    return lambda n, out: [
        sys.executable,
        __file__,
        "--arm",
        name,
        "--rows",
        str(n),
        "--out",
        str(out),
        "--repeat",
        str(repeat),
    ]


def _feast(python: Path, store: str, repeat: int):
    return lambda n, out: [
        str(python),
        str(HERE / "feast_arm.py"),
        "--store",
        store,
        "--rows",
        str(n),
        "--out",
        str(out),
        "--work",
        str(WORK),
        "--export",
        str(EXPORT),
        "--repeat",
        str(repeat),
    ]


def _at(results: dict, name: str, size: int) -> str | None:
    """The key of ``name``'s finished result on a spine of ``size`` rows, if there is one."""
    for key in (name, f"{name}@{size}"):
        result = results.get(key, {})
        if result.get("spine_rows") == size and "seconds" in result:
            return key
    return None


def _tried(results: dict, name: str, size: int) -> bool:
    """Whether ``name`` ran on ``size`` rows, or already failed to finish on as few or fewer."""
    mine = [r for k, r in results.items() if k.split("@")[0] == name]
    return any(r["spine_rows"] == size or ("timeout" in r and r["spine_rows"] <= size) for r in mine)


def environment() -> dict:
    import platform

    return {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "load_average": round(os.getloadavg()[0], 1),
        "date": time.strftime("%Y-%m-%d"),
    }


def update_readme(text: str) -> None:
    start, end = "<!-- point_in_time:start -->", "<!-- point_in_time:end -->"
    head, rest = README.read_text().split(start, 1)
    _, tail = rest.split(end, 1)
    README.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def table(report: dict) -> str:
    results, checks = report["results"], report["checks"]
    floors = {
        r["spine_rows"]: r for k, r in results.items() if k.split("@")[0] == "floor_asof" and "seconds" in r
    }
    lines = [
        "| arm | spine rows | seconds | vs floor (time) | peak MB | vs floor (memory) | output |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for key, result in results.items():
        name = key.split("@")[0]
        if "seconds" not in result:
            status = (
                f"did not finish within {result['timeout']:.0f} s"
                if "timeout" in result
                else result.get("error", "")
            )
            lines.append(f"| {name} | {result.get('spine_rows', 0):,} | - | - | - | - | {status} |")
            continue
        floor = floors.get(result["spine_rows"])
        time_ratio = f"{result['seconds'] / floor['seconds']:.2f}x" if floor else "-"
        memory_ratio = f"{result['peak_mb'] / floor['peak_mb']:.2f}x" if floor else "-"
        check = checks.get(key)
        if check is None:
            verdict = "reference" if name in ("floor_asof", "naive_range_join") else "not compared"
        elif check["missing"] == 0 and check["extra"] == 0 and check["differing"] == 0:
            verdict = f"equal to {REFERENCES[name]}"
        else:
            verdict = (
                f"{check['missing']:,} spine rows dropped, {check['differing']:,} values differ "
                f"(vs {REFERENCES[name]})"
            )
        lines.append(
            f"| {name} | {result['spine_rows']:,} | {result['seconds']:.2f} | {time_ratio} | "
            f"{result['peak_mb']:.0f} | {memory_ratio} | {verdict} |"
        )
    env = report["environment"]
    lines += [
        "",
        f"{report['events']:,} transactions of {report['parameters']['users']:,} users (Zipf "
        f"{report['parameters']['zipf']}); best of {report['repeat']} runs per arm; Python {env['python']}, {env['cores']} cores, "
        f"{env['machine']}, load average {env['load_average']} at the end; {env['date']}",
        "",
        *verdicts(results),
    ]
    return "\n".join(lines)


def verdicts(results: dict) -> list[str]:
    """Each target, met or missed, from the numbers in the table."""
    out = []
    plain, floor = results.get("featureplane_plain", {}), results.get("floor_asof", {})
    if "seconds" in plain and "seconds" in floor:
        ratio = plain["seconds"] / floor["seconds"]
        out.append(
            f"- Plain views: {ratio:.2f}x the floor's time (target at most 1.2x): **{'met' if ratio <= 1.2 else 'missed'}**."
        )
    for key, result in results.items():
        naive = _at(results, "naive_range_join", result.get("spine_rows", -1))
        if key.split("@")[0] != "featureplane_aggregates" or "seconds" not in result or naive is None:
            continue
        speedup = results[naive]["seconds"] / result["seconds"]
        note = (
            ""
            if result["spine_rows"] == floor.get("spine_rows")
            else " (the naive join did not finish the full spine)"
        )
        out.append(
            f"- Aggregates on {result['spine_rows']:,} spine rows{note}: the naive range join takes {speedup:.1f}x "
            f"featureplane's time (target at least 3x): **{'met' if speedup >= 3 else 'missed'}**."
        )
    ratios = {}
    for key, result in results.items():
        floor_key = _at(results, "floor_asof", result.get("spine_rows", -1))
        if key.startswith("featureplane") and "peak_mb" in result and floor_key:
            ratios[key] = result["peak_mb"] / results[floor_key]["peak_mb"]
    if ratios:
        worst = max(ratios, key=ratios.get)
        out.append(
            f"- Memory: featureplane's arms peak at up to {ratios[worst]:.2f}x the floor's on the same spine "
            f"({worst}; target at most 1.5x): **{'met' if ratios[worst] <= 1.5 else 'missed'}**."
        )
    return out


if __name__ == "__main__":
    main()
