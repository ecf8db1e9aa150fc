"""featureplane's Dagster code location: `dagster dev -w workspace.yaml` or `dagster ... -m dagster_project`.

It reads featureplane.yaml (``$FEATUREPLANE_CONFIG``, else ./featureplane.yaml, else
./feature_repo/featureplane.yaml) and the registry it names. Only this package imports Dagster.
"""

from dagster_project.definitions import build_definitions

defs = build_definitions()
