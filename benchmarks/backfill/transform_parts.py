"""Where the backfill's transform time goes, for `user_daily_spend` over the backfill benchmark's data.

Run after `benchmarks/backfill/run.py` (it reuses that run's warehouse and applied repository). The
queries run one after another in one process and on one DuckDB connection: the floor's hand-written
query, the view's Snowflake SQL transpiled with its source window, the conformed query without the
de-duplication by key and timestamp, the conformed query as materialization runs it, and the same
with `DISTINCT ON` in place of `QUALIFY row_number()`. Each is fetched to Arrow, as the arms do.

usage: .venv/bin/python benchmarks/backfill/transform_parts.py [--days 365] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import WORK  # noqa: E402
from floor import QUERIES  # noqa: E402

VIEW = "user_daily_spend"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from featureplane.config import load_config
    from featureplane.runtime import Runtime

    repo = WORK / "backfill" / "repo" / "featureplane.yaml"
    if not repo.exists():
        raise SystemExit(f"{repo} does not exist: run benchmarks/backfill/run.py first")
    config = load_config(repo)
    with Runtime(config) as runtime:
        state = runtime.registry.load("prod")
        view = state.feature_view(VIEW)
        start = view.start
        end = start + timedelta(days=args.days)
        engine = runtime.engine
        inner = engine._sql_query(view, state.definitions.sources, start, end)
        conformed = engine._conform(view, inner, start, end, True)
        body, ranked = conformed.split(" QUALIFY ", 1)
        order = ranked[ranked.index("ORDER BY ") + len("ORDER BY ") : ranked.rindex(") = 1")]
        keys = ", ".join(f'"{k}"' for k in [*view.join_key_names, view.timestamp_field])
        arms = {
            # the engine's connection has the warehouse open as its main database
            "floor: the hand-written query": QUERIES[VIEW]
            .format(start=start, end=end)
            .replace("w.raw.", "raw."),
            "the view's SQL, transpiled, with its source window": inner,
            "conformed, without the de-duplication": f'{body} ORDER BY "{view.timestamp_field}"',
            "conformed, as materialization runs it (QUALIFY row_number())": conformed,
            "conformed, with DISTINCT ON instead": (
                f"SELECT DISTINCT ON ({keys}) * FROM ({body}) AS r ORDER BY {keys}, {order}"
            ),
        }
        print(f"{VIEW}, [{start}, {end}), engine settings {engine.settings}")
        for name, sql in arms.items():
            seconds = []
            for _ in range(args.rounds):
                clock = time.perf_counter()
                rows = engine.con.sql(sql).to_arrow_table().num_rows
                seconds.append(time.perf_counter() - clock)
            print(f"{name}: {rows:,} rows, {' / '.join(f'{s:.2f}' for s in seconds)} s")


if __name__ == "__main__":
    main()
