"""The floor for the backfill benchmark: one hand-written DuckDB query per view over the whole range,
one raw Delta write, and one bulk SQLite insert of the latest row per key. No framework, no checks.

usage: floor.py WAREHOUSE OUT_DIR START END
"""

from __future__ import annotations

import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb
import orjson
from deltalake import write_deltalake

QUERIES = {
    "user_daily_spend": """
        SELECT user_id,
               date_trunc('day', ts) + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND AS ts,
               sum(amount) AS spend, count(*) AS transaction_count, max(amount) AS max_amount,
               count(DISTINCT merchant_id) AS distinct_merchants,
               avg(CASE WHEN hour(ts) < 5 THEN 1.0 ELSE 0.0 END) AS night_share
        FROM w.raw.transactions WHERE ts >= TIMESTAMP '{start}' AND ts < TIMESTAMP '{end}'
        GROUP BY user_id, date_trunc('day', ts)
    """,
    "user_profile": """
        SELECT user_id, updated_at, age, country, credit_limit, signup_ts
        FROM w.raw.users WHERE updated_at >= TIMESTAMP '{start}' AND updated_at < TIMESTAMP '{end}'
    """,
}
EPOCH = datetime(1970, 1, 1)
TIMESTAMPS = {"user_daily_spend": "ts", "user_profile": "updated_at"}


def main() -> None:
    warehouse, out, start, end = sys.argv[1:5]
    out_dir = Path(out)
    con = duckdb.connect()
    con.execute(f"ATTACH '{warehouse}' AS w (READ_ONLY)").fetchall()
    online = sqlite3.connect(out_dir / "online.db", isolation_level=None)
    online.execute("PRAGMA journal_mode = WAL")
    online.execute(
        "CREATE TABLE IF NOT EXISTS online_features (table_id TEXT, entity_key TEXT, event_ts INTEGER, features BLOB,"
        " PRIMARY KEY (table_id, entity_key)) WITHOUT ROWID"
    )
    rows_online = 0
    online_seconds = 0.0
    for view, query in QUERIES.items():
        rows = con.sql(query.format(start=start, end=end)).to_arrow_table()
        write_deltalake(str(out_dir / view), rows, mode="overwrite")
        ts = TIMESTAMPS[view]
        latest = con.sql(
            f"SELECT * FROM rows QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY {ts} DESC) = 1"
        ).fetchall()
        started = time.perf_counter()
        online.execute("BEGIN")
        online.executemany(
            "INSERT OR REPLACE INTO online_features VALUES (?, ?, ?, ?)",
            (
                (
                    view,
                    orjson.dumps([r[0]]).decode(),
                    int((r[1] - EPOCH).total_seconds() * 1_000_000),
                    orjson.dumps(list(r[2:]), default=str),
                )
                for r in latest
            ),
        )
        online.execute("COMMIT")
        online_seconds += time.perf_counter() - started
        rows_online += len(latest)
    print(orjson.dumps({"online_rows": rows_online, "online_seconds": online_seconds}).decode())


if __name__ == "__main__":
    main()
