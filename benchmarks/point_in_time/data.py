"""The benchmark's data: the example repository over transactions whose users follow a Zipf law, its
views materialized once, and a spine of transactions (so spine keys are as skewed as the events).

Everything lands under ``benchmarks/.work/point_in_time`` and is reused while the parameters match.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "benchmarks" / ".work" / "point_in_time"
REPO = WORK / "feature_repo"
EXPORT = WORK / "export"  # Parquet copies of the stored rows, for the arms that read files
END = date(2026, 11, 1)  # the data covers the days before it
SERVICES = """
from feature_views.transactions import user_daily_spend, user_transaction_metrics
from feature_views.users import user_profile
from featureplane import FeatureService

plain_views = FeatureService(name="plain_views", features=[user_daily_spend, user_profile[["age", "country", "credit_limit"]]])
aggregates = FeatureService(name="aggregates", features=[user_transaction_metrics])
"""
PLAIN = {
    "user_daily_spend": ["spend", "transaction_count", "max_amount", "distinct_merchants", "night_share"],
    "user_profile": ["age", "country", "credit_limit"],
}


def parameters(users: int, days: int, per_day: int, zipf: float, seed: int) -> dict:
    return {
        "users": users,
        "days": days,
        "per_day": per_day,
        "zipf": zipf,
        "seed": seed,
        "end": END.isoformat(),
    }


def generate(warehouse: Path, users: int, days: int, per_day: int, zipf: float, seed: int) -> int:
    """``raw.transactions`` and ``raw.users`` like the example generator's, users drawn from a Zipf law."""
    import numpy as np
    import pyarrow as pa

    from featureplane.compute.duckdb import connect_warehouse

    rng = np.random.default_rng(seed)
    first = datetime.combine(END - timedelta(days=days), datetime.min.time())
    weights = 1.0 / np.arange(1, users + 1) ** zipf
    weights /= weights.sum()
    ids = np.array([f"user_{i}" for i in range(users)], dtype=object)
    typical = rng.lognormal(3.4, 0.7, size=users)
    batches = []
    for day in range(days):
        n = int(rng.poisson(per_day))
        who = rng.choice(users, size=n, p=weights)
        stamps = np.datetime64(first + timedelta(days=day), "us") + rng.integers(
            0, 86_400_000_000, size=n
        ).astype("timedelta64[us]")
        order = np.argsort(stamps, kind="stable")
        batches.append(
            pa.record_batch(
                {
                    "user_id": pa.array(ids[who][order].tolist(), pa.string()),
                    "merchant_id": pa.array([f"merchant_{m}" for m in rng.integers(0, 2000, size=n)[order]]),
                    "amount": pa.array(np.round(typical[who] * rng.lognormal(0, 0.5, size=n), 2)[order]),
                    "ts": pa.array(stamps[order], pa.timestamp("us")),
                }
            )
        )
    transactions = pa.Table.from_batches(batches)
    profiles = pa.table(
        {
            "user_id": pa.array(ids.tolist(), pa.string()),
            "signup_ts": pa.array(np.full(users, np.datetime64(first, "us")), pa.timestamp("us")),
            "country": pa.array(rng.choice(["US", "GB", "DE", "FR"], size=users).tolist()),
            "age": pa.array(rng.integers(18, 90, size=users), pa.int64()),
            "credit_limit": pa.array(rng.choice([1000.0, 5000.0, 25000.0], size=users)),
            "updated_at": pa.array(
                np.datetime64(first, "us")
                + rng.integers(0, days * 86_400_000_000, size=users).astype("timedelta64[us]"),
                pa.timestamp("us"),
            ),
        }
    )
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = connect_warehouse(warehouse, read_only=False)
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw").fetchall()
        con.register("t_in", transactions)
        con.register("u_in", profiles)
        con.execute("CREATE OR REPLACE TABLE raw.transactions AS SELECT * FROM t_in ORDER BY ts").fetchall()
        con.execute("CREATE OR REPLACE TABLE raw.users AS SELECT * FROM u_in").fetchall()
    finally:
        con.close()
    return transactions.num_rows


def prepare(params: dict, spine_rows: int, say=print) -> dict:
    """Build (or reuse) the repository, its materialized views, the Parquet exports and the spine."""
    stamp = WORK / "prepared.json"
    wanted = {**params, "spine_rows": spine_rows}
    if stamp.exists() and json.loads(stamp.read_text()).get("parameters") == wanted:
        return json.loads(stamp.read_text())
    from featureplane.materialization.materialize import materialize
    from featureplane.repo.planning import apply_plan, plan_repository
    from featureplane.runtime import Runtime

    shutil.rmtree(WORK, ignore_errors=True)
    shutil.copytree(
        ROOT / "feature_repo",
        REPO,
        ignore=shutil.ignore_patterns(".featureplane", "__pycache__", "featureplane.yaml", "dbt_features"),
    )
    (REPO / "benchmark_services.py").write_text(SERVICES)
    (REPO / "featureplane.yaml").write_text(
        textwrap.dedent(
            """\
            project: benchmark
            data_dir: .featureplane
            registry: {type: sqlite, path: .featureplane/registry.db}
            engine: {type: duckdb, warehouse: .featureplane/warehouse.duckdb}
            offline_store: {type: delta, path: .featureplane/offline}
            online_store: {type: sqlite, path: .featureplane/online.db}
            """
        )
    )
    from featureplane.config import load_config

    config = load_config(REPO / "featureplane.yaml")
    say(
        f"generating {params['days']} days of transactions for {params['users']:,} Zipf({params['zipf']}) users"
    )
    events = generate(
        config.warehouse_path,
        params["users"],
        params["days"],
        params["per_day"],
        params["zipf"],
        params["seed"],
    )
    with Runtime(config) as runtime:
        runtime.registry.create_workspace("bench", live=True)
        apply_plan(runtime, plan_repository(runtime, "bench"))
        state = runtime.registry.load("bench")
        for view in ("user_daily_spend", "user_profile", "user_transaction_metrics"):
            say(f"materializing {view}")
            materialize(
                runtime,
                state,
                view,
                state.feature_view(view).start,
                datetime.combine(END, datetime.min.time()),
            )
        EXPORT.mkdir(parents=True)
        import pyarrow.parquet as pq

        for view in PLAIN:
            pq.write_table(
                runtime.offline_store.read(state.table_id(view), state.feature_view(view)),
                EXPORT / f"{view}.parquet",
            )
        con = runtime.engine.con
        con.execute(
            f"COPY (SELECT user_id, ts FROM raw.transactions USING SAMPLE reservoir({spine_rows} ROWS) "
            f"REPEATABLE (7) ORDER BY ts) TO '{WORK / 'spine.parquet'}' (FORMAT parquet)"
        ).fetchall()
        tables = {view: state.table_id(view) for view in (*PLAIN, "user_transaction_metrics")}
    prepared = {
        "parameters": wanted,
        "events": events,
        "tables": tables,
        "config": str(REPO / "featureplane.yaml"),
    }
    stamp.write_text(json.dumps(prepared, indent=2))
    return prepared
