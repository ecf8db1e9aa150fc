"""Serving health as observations of feature service assets.

Lookup servers write their request counters and latency histograms to stats files
(``monitoring.serving_stats.path``); this sensor reads them every minute and records, for each feature
service that served requests since its previous reading, an observation with the request rate, error
rates and latency percentiles. The feature service's page in the Dagster UI plots them over time.
"""

import json

import dagster as dg

from featureplane.config import MonitoringSettings
from featureplane.monitoring.serving_health import health_since, read_stats

SENSOR_NAME = "featureplane_serving_health"


def serving_health_sensor(
    settings: MonitoringSettings, services: set[tuple[str, str]]
) -> dg.SensorDefinition:
    """``services`` are the (workspace, feature service) pairs that are assets of this code location."""

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Request rate, error rate and latency percentiles of the lookup service, per feature service.",
    )
    def serving_health(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else None
        health, new_cursor = health_since(read_stats(settings.serving_stats_path), cursor)
        events = [
            dg.AssetObservation(asset_key=[h.workspace, h.service], metadata=h.metadata())
            for h in health
            if (h.workspace, h.service) in services
        ]
        return dg.SensorResult(asset_events=events, cursor=json.dumps(new_cursor))

    return serving_health
