"""featureplane: feature definitions as code, materialized by Dagster, served by a Tecton-compatible API.

Importing this package is cheap (standard library only): definitions are plain objects, and the heavy
parts (DuckDB, pandas, Delta, Dagster) load only where they run.
"""

from featureplane.definitions.entity import Entity, Field
from featureplane.definitions.feature_service import FeatureService
from featureplane.definitions.feature_view import (
    BatchFeatureView,
    FeatureTable,
    FeatureView,
    batch_feature_view,
    dbt_feature_view,
)
from featureplane.definitions.features import Aggregate, Attribute, LifetimeWindow, last_n
from featureplane.definitions.realtime import RealtimeFeatureView, RequestSource, realtime_feature_view
from featureplane.definitions.sources import BatchSource, DbtModel, PushSource
from featureplane.definitions.transformation import MaterializationContext, RealtimeContext
from featureplane.monitoring.expectations import (
    Between,
    Expectation,
    ExpectationSuiteFile,
    InSet,
    MatchesRegex,
    MeanBetween,
    NotNull,
    RowCountBetween,
    Unique,
)
from featureplane.types import Array, Bool, Float64, Int64, String, Timestamp

__version__ = "0.1.0"


def get_workspace(name: str, *, config=None):
    """A workspace by name: ``featureplane.get_workspace("prod").get_feature_service("fraud_detection")``."""
    from featureplane.workspace import get_workspace as _get_workspace

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
