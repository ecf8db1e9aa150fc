#!/usr/bin/env bash
# Merges to main: apply the repository to the workspace as one atomic registry version. With
# $DAGSTER_URL (the Dagster webserver), then reload the code location ($DAGSTER_LOCATION, default
# featureplane) so the UI's asset graph and the daemon's schedules follow the new registry version.
set -euo pipefail
featureplane="${FEATUREPLANE:-featureplane}"
"$featureplane" apply --yes
if [[ -n "${DAGSTER_URL:-}" ]]; then
  location="${DAGSTER_LOCATION:-featureplane}"
  query="mutation { reloadRepositoryLocation(repositoryLocationName: \"$location\") { __typename ... on WorkspaceLocationEntry { locationOrLoadError { __typename ... on PythonError { message } } } ... on PythonError { message } } }"
  answer=$(curl --silent --show-error --fail --max-time 300 -X POST "${DAGSTER_URL%/}/graphql" \
    -H 'Content-Type: application/json' --data "{\"query\": $(printf '%s' "$query" | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))')}")
  if [[ "$answer" != *'"RepositoryLocation"'* ]]; then
    echo "reloading the code location $location at $DAGSTER_URL failed: $answer" >&2
    exit 1
  fi
  echo "reloaded the Dagster code location $location at $DAGSTER_URL"
fi
