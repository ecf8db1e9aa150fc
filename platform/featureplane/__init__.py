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
from featureplane.definitions.features import Attribute
from featureplane.definitions.sources import BatchSource, DbtModel, PushSource
from featureplane.definitions.transformation import MaterializationContext
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
    "MatchesRegex",
    "MaterializationContext",
    "MeanBetween",
    "NotNull",
    "PushSource",
    "RowCountBetween",
    "String",
    "Timestamp",
    "Unique",
    "batch_feature_view",
    "dbt_feature_view",
    "get_workspace",
]
