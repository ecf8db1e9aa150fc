"""Run one materialization in this process and SIGKILL it at a chosen point (used by test_reliability).

usage: crash_runner.py CONFIG WORKSPACE VIEW START END POINT
POINT: offline_write (while the Delta data files are being written, before the commit),
       before_online (after the offline commit, before the online sync),
       online_write (after the first online batch is committed), none.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from featureplane import materialization
from featureplane.config import load_config
from featureplane.online_stores import sqlite as sqlite_store
from featureplane.runtime import Runtime
from featureplane.specs import parse_time


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_when_new_data_files_appear(table_dir: Path) -> None:
    before = set(table_dir.rglob("*.parquet")) if table_dir.exists() else set()

    def watch() -> None:
        while True:
            if table_dir.exists() and set(table_dir.rglob("*.parquet")) - before:
                die()
            time.sleep(0.0005)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    config_path, workspace, view, start, end, point = sys.argv[1:7]
    runtime = Runtime(load_config(config_path))
    state = runtime.registry.load(workspace)
    if point == "offline_write":
        kill_when_new_data_files_appear(runtime.config.offline_path / state.table_id(view))
    elif point == "before_online":
        materialization.sync_online = lambda *args, **kwargs: die()
    elif point == "online_write":
        real_write = sqlite_store.SQLiteOnlineStore.write
        sqlite_store.BATCH = 50

        def write_then_die(self, table_id, rows, **kwargs):
            iterator = iter(rows)
            first = [row for _, row in zip(range(sqlite_store.BATCH), iterator, strict=False)]
            real_write(self, table_id, first, **kwargs)
            die()

        sqlite_store.SQLiteOnlineStore.write = write_then_die
    materialization.materialize(runtime, state, view, parse_time(start), parse_time(end))
    print("completed")


if __name__ == "__main__":
    main()
