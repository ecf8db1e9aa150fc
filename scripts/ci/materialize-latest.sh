#!/usr/bin/env bash
# Materialize the latest complete partition of every batch feature view of the workspace through the
# Dagster CLI, so the runs are recorded in the Dagster instance like any other.
set -euo pipefail
featureplane="${FEATUREPLANE:-featureplane}"
dagster="${DAGSTER:-dagster}"
"$featureplane" partitions --latest | while read -r asset partition; do
  echo "materializing $asset $partition"
  "$dagster" asset materialize -m dagster_project --select "$asset" --partition "$partition"
done
