"""Which stream store goes with an online store (one module per backend: ``streams.sqlite``,
``streams.dynamodb``), imported lazily so the Lambda loads only DynamoDB's."""

from __future__ import annotations

from featureplane.online_stores.base import OnlineStore
from featureplane.streams.store import StreamStore


def stream_store_for(online: OnlineStore) -> StreamStore:
    """The stream store beside ``online`` (SQLite or DynamoDB); ValueError for any other."""
    kind = online.describe().get("type", type(online).__name__)
    if kind == "sqlite":
        from featureplane.streams.sqlite import SQLiteStreamStore

        return SQLiteStreamStore(online)  # type: ignore[arg-type]
    if kind == "dynamodb":
        from featureplane.streams.dynamodb import DynamoDBStreamStore

        return DynamoDBStreamStore(online)  # type: ignore[arg-type]
    raise ValueError(
        f"stream processing supports the SQLite and DynamoDB online stores; this configuration's online "
        f"store is {kind}"
    )
