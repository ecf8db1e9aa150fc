"""Offline stores keep every materialized feature row for training: Delta Lake locally, Snowflake in production."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from featureplane.config import Config
    from featureplane.offline_stores.base import OfflineStore


def create_offline_store(config: Config) -> OfflineStore:
    kind = config.offline_store.get("type", "delta")
    if kind == "delta":
        from featureplane.offline_stores.delta import DeltaOfflineStore

        return DeltaOfflineStore(config)
    if kind == "snowflake":
        from featureplane.offline_stores.snowflake import SnowflakeOfflineStore

        return SnowflakeOfflineStore(config)
    raise ValueError(
        f"{config.path}: offline_store type {kind!r} is not supported (expected delta or snowflake)"
    )
