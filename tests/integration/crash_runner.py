"""Run one materialization in this process and SIGKILL it at a chosen point (used by test_reliability).

usage: crash_runner.py CONFIG WORKSPACE VIEW START END POINT
POINT: offline_write (data files written, Delta commit not yet made),
       before_online (after the offline commit, before the online sync),
       online_write (after the first online batch is committed), none.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from featureplane.config import load_config
from featureplane.definitions.specs import parse_time
from featureplane.materialization import materialize as materialization
from featureplane.online_stores import sqlite as sqlite_store
from featureplane.runtime import Runtime


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def write_files_then_die(table_or_uri, data, *, partition_by=None, **kwargs) -> None:
    """Leave what a Delta writer killed before its commit leaves: new data files, no log entry.

    Delta's commit (one new JSON file in _delta_log) is the only step that makes data visible; the
    writer runs inside delta-rs, so the test reproduces the moment between its two phases itself."""
    import uuid

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if hasattr(data, "read_all"):  # the store streams record batches
        data = data.read_all()
    root = Path(str(table_or_uri))
    column = (partition_by or ["_partition"])[0]
    for value in pc.unique(data[column]).to_pylist():
        part = data.filter(pc.equal(data[column], value)).drop_columns([column])
        directory = root / f"{column}={value}"
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, directory / f"part-00000-{uuid.uuid4()}-c000.snappy.parquet")
    die()


def main() -> None:
    config_path, workspace, view, start, end, point = sys.argv[1:7]
    runtime = Runtime(load_config(config_path))
    state = runtime.registry.load(workspace)
    if point == "offline_write":
        import deltalake

        deltalake.write_deltalake = write_files_then_die
    elif point == "before_online":
        materialization.sync_online = lambda *args, **kwargs: die()
    elif point == "online_write":
        real_write = sqlite_store.SQLiteOnlineStore.write_encoded
        sqlite_store.BATCH = 50

        def write_then_die(self, table_id, rows, **kwargs):
            iterator = iter(rows)
            first = [row for _, row in zip(range(sqlite_store.BATCH), iterator, strict=False)]
            real_write(self, table_id, first, **kwargs)
            die()

        sqlite_store.SQLiteOnlineStore.write_encoded = write_then_die
    materialization.materialize(runtime, state, view, parse_time(start), parse_time(end))
    print("completed")


if __name__ == "__main__":
    main()
