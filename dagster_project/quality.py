"""Data quality on feature view assets: one asset check per expectation, profiles as metadata.

Materialization validates every partition with Great Expectations before writing. Each expectation
(the view's defaults and its own) is an asset check of the view's asset; error-severity ones are
blocking. When an error expectation fails, the check results are recorded, nothing is written to
either store, and the run fails. Profiles (row count; per feature null fraction, min, max, mean,
distinct count) are numeric materialization metadata of a single-partition run, and one observation
per partition in a range run (its last ``monitoring.quality.profile_observations`` partitions, 31 by
default: Dagster stores each event on its own), so the UI plots them per partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dagster as dg

from featureplane.config import MonitoringSettings
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.monitoring.checks import CheckResult
from featureplane.monitoring.expectations import resolve_expectations
from featureplane.monitoring.profiles import PartitionProfiler
from featureplane.registry.base import WorkspaceState
from featureplane.runtime import Runtime

DATA_QUALITY = "data_quality"


def quality_check_specs(
    settings: MonitoringSettings, key: dg.AssetKey, view: FeatureViewSpec
) -> list[dg.AssetCheckSpec]:
    if not settings.quality_enabled:
        return []
    return [
        dg.AssetCheckSpec(
            expectation.name,
            asset=key,
            blocking=expectation.blocking,
            description=f"[{expectation.severity}] {expectation.describe()}",
            metadata={"severity": expectation.severity, "expectation": expectation.type},
        )
        for expectation in resolve_expectations(view)
    ]


def metadata_value(value: Any) -> Any:
    """Dagster metadata for a plain value: lists and mappings as JSON, the rest as they are."""
    if isinstance(value, dict | list):
        return dg.MetadataValue.json(value)
    return value


def check_result(key: dg.AssetKey, result: CheckResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=result.name,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR if result.blocking else dg.AssetCheckSeverity.WARN,
        description=result.summary(),
        metadata={k: metadata_value(v) for k, v in result.metadata().items()},
    )


def materialize_with_checks(
    context: dg.AssetExecutionContext,
    runtime: Runtime,
    state: WorkspaceState,
    view_name: str,
    start: datetime,
    end: datetime,
) -> Iterator[Any]:
    """Run featureplane's materialization with validation and profiling; yield Dagster's events."""
    from featureplane.materialization.materialize import ValidationFailed, materialize
    from featureplane.monitoring.quality import quality_validators

    key = context.asset_key
    validators = quality_validators(runtime.config)
    profiler = PartitionProfiler()
    try:
        result = materialize(
            runtime,
            state,
            view_name,
            start,
            end,
            progress=context.log.info,
            validators=[*validators, profiler],
        )
    except ValidationFailed as failure:
        for check in failure.results:
            yield check_result(key, check)
        failed = [c for c in failure.results if c.blocking and not c.passed]
        raise dg.Failure(
            description=f"{failure}:\n" + "\n".join(f"- {c.summary()}" for c in failed),
            metadata={
                "featureplane/reason": DATA_QUALITY,
                "failed_checks": ", ".join(c.name for c in failed),
                **(next(iter(profiler.profiles.values())) if len(profiler.profiles) == 1 else {}),
            },
            allow_retries=False,
        ) from None
    metadata = result.metadata()
    if len(profiler.profiles) == 1:
        metadata.update(next(iter(profiler.profiles.values())))
    else:
        settings = MonitoringSettings.from_config(runtime.config)
        profiles = list(profiler.profiles.items())
        observed = profiles[max(len(profiles) - settings.profile_observations, 0) :]
        if len(observed) < len(profiler.profiles):
            metadata["profiled_partitions_observed"] = f"last {len(observed)} of {len(profiler.profiles)}"
        for partition, profile in observed:
            yield dg.AssetObservation(asset_key=key, partition=partition, metadata=profile)
    yield dg.MaterializeResult(metadata=metadata)
    for check in result.checks:
        yield check_result(key, check)
