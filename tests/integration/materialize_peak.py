"""Materialize one feature view of a workspace for a window, as the Dagster asset does (Great
Expectations validation and profiles), and print this process's peak resident memory (VmHWM) in MB.

usage: materialize_peak.py WORKSPACE VIEW START END   (FEATUREPLANE_CONFIG names the repository)
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

from featureplane.config import load_config
from featureplane.materialization.materialize import materialize
from featureplane.monitoring.profiles import PartitionProfiler
from featureplane.monitoring.quality import quality_validators
from featureplane.runtime import Runtime


def peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    workspace, view, start, end = sys.argv[1:5]
    config = load_config()
    with Runtime(config) as runtime:
        state = runtime.registry.load(workspace)
        validators = [*quality_validators(config), PartitionProfiler()]
        result = materialize(
            runtime,
            state,
            view,
            datetime.fromisoformat(start),
            datetime.fromisoformat(end),
            validators=validators,
        )
    print(json.dumps({"rows": result.rows, "partitions": result.partitions, "peak_mb": peak_mb()}))


if __name__ == "__main__":
    main()
