"""featureplane's online publish of the latest values of N entities x 10 features into SQLite, through
the same code the materialization runs (offline Delta table -> online_changes -> OnlineStore.write).

usage: publish_ours.py PARQUET OUT_DIR
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from featureplane.definitions.specs import FeatureSpec, FeatureViewSpec, FieldSpec
from featureplane.materialization.online_sync import online_rows
from featureplane.offline_stores.delta import DeltaOfflineStore
from featureplane.online_stores.sqlite import SQLiteOnlineStore


def main() -> None:
    parquet, out = sys.argv[1:3]
    out_dir = Path(out)
    table = pq.read_table(parquet)
    features = [c for c in table.column_names if c.startswith("f")]
    view = FeatureViewSpec(
        name="bench",
        kind="batch",
        entities=["user"],
        join_keys=[FieldSpec("user_id", "string")],
        sources=[],
        features=[FeatureSpec(f, "float64") for f in features],
        timestamp_field="ts",
        online=True,
    )
    offline = DeltaOfflineStore(path=out_dir / "offline")
    offline.write_window("bench/bench/g1", view, datetime(2000, 1, 1), datetime(2100, 1, 1), table)
    online = SQLiteOnlineStore(out_dir / "online.db")
    started = time.perf_counter()
    changes = offline.online_changes("bench/bench/g1", view, None, None, None)
    written = 0
    for batch in changes.upserts:
        written += online.write("bench/bench/g1", online_rows(view, batch))
    seconds = time.perf_counter() - started
    print(orjson.dumps({"rows": written, "seconds": seconds}).decode())


if __name__ == "__main__":
    main()
