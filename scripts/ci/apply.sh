#!/usr/bin/env bash
# Merges to main: apply the repository to the workspace as one atomic registry version.
set -euo pipefail
featureplane="${FEATUREPLANE:-featureplane}"
"$featureplane" apply --yes
