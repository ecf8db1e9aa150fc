"""Run the lookup server in this process with the online write of every ingest request after the first
N held forever: those requests are in the ingest log and wait before their online write, for the test
to SIGKILL the process in that window (used by test_serving_http).

usage: ingest_hold_runner.py CONFIG PORT N HELD_FILE
Each held request appends a line to HELD_FILE once its records are in the log.
"""

from __future__ import annotations

import sys
import threading

from featureplane.config import load_config
from featureplane.ingest.service import Ingestor
from featureplane.serving.app import create_lookup_service
from featureplane.serving.http_server import ServerLimits, serve


def main() -> None:
    config_path, port, first, held_file = sys.argv[1:5]
    served = 0
    lock = threading.Lock()
    write_online = Ingestor._write_online

    def write_or_hold(self, rows, result) -> None:
        nonlocal served
        with lock:
            served += 1
            hold = served > int(first)
            if hold:
                with open(held_file, "a") as handle:
                    handle.write("held\n")
        if hold:
            threading.Event().wait()  # until the test kills the process
        write_online(self, rows, result)

    Ingestor._write_online = write_or_hold
    config = load_config(config_path)
    serve(create_lookup_service(config), port=int(port), limits=ServerLimits.from_settings(config.serving))


if __name__ == "__main__":
    main()
