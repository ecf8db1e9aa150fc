"""featureplane: feature definitions as code, materialized by Dagster, served by a Tecton-compatible API.

Importing this package is cheap (standard library only): definitions are plain objects, and the heavy
parts (DuckDB, pandas, Delta, Dagster) load only where they run.
"""

import importlib
from typing import Any

# The SDK's names, imported on first use (PEP 562): a feature repository's ``from featureplane import
# Entity`` loads the definitions, while the lookup service, which imports ``featureplane.serving``,
# does not pay for them.
_EXPORTS = {
    "Aggregate": "featureplane.definitions.features",
    "Array": "featureplane.types",
    "Attribute": "featureplane.definitions.features",
    "BatchFeatureView": "featureplane.definitions.feature_view",
    "BatchSource": "featureplane.definitions.sources",
    "Between": "featureplane.definitions.expectations",
    "Bool": "featureplane.types",
    "DbtModel": "featureplane.definitions.sources",
    "Entity": "featureplane.definitions.entity",
    "Expectation": "featureplane.definitions.expectations",
    "ExpectationSuiteFile": "featureplane.definitions.expectations",
    "FeatureService": "featureplane.definitions.feature_service",
    "FeatureTable": "featureplane.definitions.feature_view",
    "FeatureView": "featureplane.definitions.feature_view",
    "Field": "featureplane.definitions.entity",
    "Float64": "featureplane.types",
    "KinesisConfig": "featureplane.definitions.stream",
    "InSet": "featureplane.definitions.expectations",
    "Int64": "featureplane.types",
    "LifetimeWindow": "featureplane.definitions.features",
    "MatchesRegex": "featureplane.definitions.expectations",
    "MaterializationContext": "featureplane.definitions.transformation",
    "MeanBetween": "featureplane.definitions.expectations",
    "NotNull": "featureplane.definitions.expectations",
    "PushSource": "featureplane.definitions.sources",
    "RealtimeContext": "featureplane.definitions.transformation",
    "RealtimeFeatureView": "featureplane.definitions.realtime",
    "RequestSource": "featureplane.definitions.realtime",
    "RowCountBetween": "featureplane.definitions.expectations",
    "StreamFeatureView": "featureplane.definitions.stream",
    "StreamSource": "featureplane.definitions.stream",
    "String": "featureplane.types",
    "Timestamp": "featureplane.types",
    "Unique": "featureplane.definitions.expectations",
    "batch_feature_view": "featureplane.definitions.feature_view",
    "dbt_feature_view": "featureplane.definitions.feature_view",
    "last_n": "featureplane.definitions.features",
    "realtime_feature_view": "featureplane.definitions.realtime",
    "stream_feature_view": "featureplane.definitions.stream",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'featureplane' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__version__ = "0.1.0"


def get_workspace(name: str, *, config=None):
    """A workspace by name: ``featureplane.get_workspace("prod").get_feature_service("fraud_detection")``."""
    from featureplane.retrieval.workspace import get_workspace as _get_workspace

    return _get_workspace(name, config=config)


__all__ = [
    "Aggregate",
    "Array",
    "Attribute",
    "BatchFeatureView",
    "BatchSource",
    "Between",
    "Bool",
    "DbtModel",
    "Entity",
    "Expectation",
    "ExpectationSuiteFile",
    "FeatureService",
    "FeatureTable",
    "FeatureView",
    "Field",
    "Float64",
    "InSet",
    "Int64",
    "LifetimeWindow",
    "MatchesRegex",
    "MaterializationContext",
    "MeanBetween",
    "NotNull",
    "PushSource",
    "RealtimeContext",
    "RealtimeFeatureView",
    "RequestSource",
    "RowCountBetween",
    "String",
    "Timestamp",
    "Unique",
    "batch_feature_view",
    "dbt_feature_view",
    "get_workspace",
    "last_n",
    "realtime_feature_view",
]
