#!/usr/bin/env bash
# Pull requests: show what merging would change. Exit 0 (no changes) or 0 with the plan printed
# (changes); exit 1 when the repository is invalid or the plan would destroy a protected object.
# Writes the plan to $PLAN_OUTPUT (default plan.txt) for posting as a comment.
set -uo pipefail
featureplane="${FEATUREPLANE:-featureplane}"
output="${PLAN_OUTPUT:-plan.txt}"
"$featureplane" plan --detailed-exitcode --out "${PLAN_JSON:-plan.json}" >"$output" 2>&1
status=$?
cat "$output"
case "$status" in
  0) echo "featureplane: no changes" ;;
  2) echo "featureplane: the plan above will be applied on merge"; status=0 ;;
  *) echo "featureplane: plan failed" ;;
esac
exit "$status"
