#!/usr/bin/env bash
# Materialize the latest complete partition of every batch feature view of the workspace through the
# Dagster CLI (`dg launch`), together with everything upstream of the views that Dagster can build (dbt
# models), so the runs are recorded in the Dagster instance like any other. One run per partition key.
set -euo pipefail
featureplane="${FEATUREPLANE:-featureplane}"
dg="${DG:-dg}"
declare -A selection
while read -r asset partition; do
  selection[$partition]="${selection[$partition]:+${selection[$partition]},}*$asset"
done < <("$featureplane" partitions --latest)
for partition in "${!selection[@]}"; do
  echo "materializing ${selection[$partition]} for partition $partition"
  "$dg" launch -m dagster_project --assets "${selection[$partition]}" --partition "$partition"
done
