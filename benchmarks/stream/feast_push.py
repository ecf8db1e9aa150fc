"""Feast's ``push`` of the stream benchmark's events into its SQLite online store (run by Feast's own
virtualenv, ``common.feast_python()``, never the project's).

``python feast_push.py EVENTS.parquet WORK_DIR BATCH[,BATCH...]`` applies a push source and a feature
view of the events' columns, pushes all the events as rows ``BATCH`` at a time (``PushMode.ONLINE``),
once per batch size, and prints the timings as JSON. Feast stores each entity's latest row: it has no windowed aggregation on push, so the
rows are what it keeps, not counts or sums over a window.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from feast_definitions import feature_store_yaml


def main(events: Path, work: Path, batches: list[int]) -> None:
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, ValueType
    from feast.data_source import PushMode
    from feast.types import Float64, String

    repo = work / "feast_push"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(feature_store_yaml(repo, "file"))
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
    push = PushSource(
        name="transactions_push", batch_source=FileSource(path=str(events), timestamp_field="ts")
    )
    view = FeatureView(
        name="last_transaction",
        entities=[user],
        ttl=timedelta(days=1),
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="transaction_id", dtype=String),
            Field(name="merchant_id", dtype=String),
            Field(name="amount", dtype=Float64),
        ],
        source=push,
        online=True,
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([user, push, view])
    frame = pd.read_parquet(events)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    store.push("transactions_push", frame.head(1), to=PushMode.ONLINE)  # warm up
    runs = {}
    for batch in batches:
        chunks = [frame.iloc[i : i + batch].reset_index(drop=True) for i in range(0, len(frame), batch)]
        started = time.perf_counter()
        for chunk in chunks:
            store.push("transactions_push", chunk, to=PushMode.ONLINE)
        seconds = time.perf_counter() - started
        runs[str(batch)] = {
            "events": len(frame),
            "seconds": seconds,
            "events_per_second": len(frame) / seconds,
        }
    last = frame.iloc[-1]
    online = store.get_online_features(
        features=["last_transaction:amount"], entity_rows=[{"user_id": last["user_id"]}]
    ).to_dict()
    print(json.dumps({"runs": runs, "check": {"user_id": last["user_id"], "amount": online["amount"][0]}}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), [int(b) for b in sys.argv[3].split(",")])
