"""The benchmarks' plain views of the fraud-detection example as Feast objects, in one place.

Imported only by scripts that run in Feast's own virtualenv (``common.feast_python()``): the lookup
benchmark's Feast repository and the point-in-time benchmark's Feast arm. Each view reads a Parquet
copy of the rows featureplane stored; ttls are featureplane's (one day for ``user_daily_spend``, none
for ``user_profile``: Feast reads a zero ttl as no expiry).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any


@dataclass
class FraudDefinitions:
    user: Any
    user_daily_spend: Any
    user_profile: Any
    fraud_detection: Any

    @property
    def objects(self) -> list[Any]:
        return [self.user, self.user_daily_spend, self.user_profile, self.fraud_detection]

    @property
    def feature_refs(self) -> list[str]:
        """Every feature of both views as ``view:feature``."""
        views = (self.user_daily_spend, self.user_profile)
        return [f"{v.name}:{f.name}" for v in views for f in v.schema if f.name != "user_id"]


def fraud_definitions(data: Path) -> FraudDefinitions:
    """The entity, the two views over ``data``'s Parquet files and the lookup benchmark's service."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64, String

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
    daily = FeatureView(
        name="user_daily_spend",
        entities=[user],
        ttl=timedelta(days=1),
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="spend", dtype=Float64),
            Field(name="transaction_count", dtype=Int64),
            Field(name="max_amount", dtype=Float64),
            Field(name="distinct_merchants", dtype=Int64),
            Field(name="night_share", dtype=Float64),
        ],
        source=FileSource(path=str(data / "user_daily_spend.parquet"), timestamp_field="ts"),
        online=True,
    )
    profile = FeatureView(
        name="user_profile",
        entities=[user],
        ttl=timedelta(0),
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="age", dtype=Int64),
            Field(name="country", dtype=String),
            Field(name="credit_limit", dtype=Float64),
        ],
        source=FileSource(path=str(data / "user_profile.parquet"), timestamp_field="updated_at"),
        online=True,
    )
    service = FeatureService(name="fraud_detection", features=[daily, profile])
    return FraudDefinitions(user, daily, profile, service)


def feature_store_yaml(repo: Path, offline_store: str) -> str:
    """A local Feast repository's settings: registry and SQLite online store inside ``repo``."""
    return textwrap.dedent(
        f"""\
        project: fraud_benchmark
        registry: {repo / "registry.db"}
        provider: local
        offline_store:
            type: {offline_store}
        online_store:
            type: sqlite
            path: {repo / "online.db"}
        entity_key_serialization_version: 3
        """
    )
