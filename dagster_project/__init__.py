"""featureplane's Dagster code location: `dagster dev -w workspace.yaml` or `dagster ... -m dagster_project`.

It reads featureplane.yaml (``$FEATUREPLANE_CONFIG``, else ./featureplane.yaml, else
./feature_repo/featureplane.yaml) and the registry it names. Only this package imports Dagster.
"""

import warnings

import dagster as dg

from dagster_project.definitions import build_definitions

# The backfill policy is "beta" in Dagster's vocabulary; say it once here rather than on every command.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

defs = build_definitions()
