"""Online stores hold the latest feature values per entity for low-latency lookups: SQLite locally,
DynamoDB in production. Imported by the lookup service: standard library, orjson and boto3 only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from featureplane.online_stores.base import OnlineStore


def create_online_store(settings: dict[str, Any], resolve: Any = None) -> OnlineStore:
    """The online store described by the ``online_store`` section of featureplane.yaml.

    ``resolve`` turns a relative path into an absolute one (relative to the config file)."""
    kind = settings.get("type", "sqlite")
    if kind == "sqlite":
        from featureplane.online_stores.sqlite import SQLiteOnlineStore

        path = settings.get("path", ".featureplane/online.db")
        return SQLiteOnlineStore(resolve(path) if resolve else path)
    if kind == "dynamodb":
        from featureplane.online_stores.dynamodb import DynamoDBOnlineStore

        return DynamoDBOnlineStore.from_settings(settings)
    raise ValueError(f"online_store type {kind!r} is not supported (expected sqlite or dynamodb)")
