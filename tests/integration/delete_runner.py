"""Run one delete-keys in this process and SIGKILL it at a chosen point, or report its memory (used by
test_delete_keys_safety).

usage: delete_runner.py CONFIG WORKSPACE VIEW KEYS_CSV CHUNK POINT
POINT: between_stores (the first chunk deleted offline, not yet online),
       second_chunk (the first chunk deleted from both stores, the second not started),
       memory (print the peak resident memory the delete added, in KiB), none.
"""

from __future__ import annotations

import os
import resource
import signal
import sys

from featureplane.config import load_config
from featureplane.materialization.deletion import CsvKeys, delete_keys
from featureplane.offline_stores.delta import DeltaOfflineStore
from featureplane.online_stores.sqlite import SQLiteOnlineStore
from featureplane.runtime import Runtime


def die(*args: object, **kwargs: object) -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    config_path, workspace, view, keys_csv, chunk, point = sys.argv[1:7]
    runtime = Runtime(load_config(config_path))
    state = runtime.registry.load(workspace)
    keys = CsvKeys(keys_csv, state.feature_view(view))
    if point == "between_stores":
        SQLiteOnlineStore.delete = die
    elif point == "second_chunk":
        real = DeltaOfflineStore.delete_keys
        calls = []

        def delete_then_die(self, *args, **kwargs):
            if calls:
                die()
            calls.append(1)
            return real(self, *args, **kwargs)

        DeltaOfflineStore.delete_keys = delete_then_die
    elif point == "memory":
        # Warm up first (imports, connections, one MERGE), so only the big delete's memory is measured.
        delete_keys(runtime, state, view, [("nobody",)])
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report = delete_keys(runtime, state, view, keys, chunk_size=int(chunk))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"keys={report.keys} rows={report.offline.rows} added_kib={peak - base}")
        return
    delete_keys(runtime, state, view, keys, chunk_size=int(chunk))
    print("completed")


if __name__ == "__main__":
    main()
