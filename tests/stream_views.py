"""Stream feature views for the stream processor's tests, built from the SDK as a repository would."""

from __future__ import annotations

from datetime import datetime, timedelta

from featureplane import (
    Aggregate,
    Attribute,
    BatchSource,
    Entity,
    Field,
    Int64,
    StreamFeatureView,
    StreamSource,
    String,
    Timestamp,
)
from featureplane.definitions.stream import DEFAULT_ALLOWED_LATENESS
from featureplane.online_stores.sqlite import SQLiteOnlineStore
from featureplane.repo.stream_validation import STREAM_FUNCTIONS
from featureplane.streams.processor import StreamProcessor, StreamRecord
from featureplane.streams.sqlite import SQLiteStreamStore

EPOCH = datetime(1970, 1, 1)
T0 = datetime(2026, 1, 5, 12, 0)
FUNCTIONS = ("count", "sum", "mean", "min", "max", "stddev_samp", "first", "last", "last_n(2)")
# Every aggregation function a stream view supports, last_n with a size.
ALL_FUNCTIONS = tuple("last_n(3)" if f == "last_n" else f for f in STREAM_FUNCTIONS)

user = Entity(name="user", join_keys=[Field("user_id", String)])
history = BatchSource(name="payments_history", table="raw.payments", timestamp_field="ts")
payments = StreamSource(
    name="payments",
    timestamp_field="ts",
    batch_config=history,
    push_schema=[
        Field("user_id", String),
        Field("ts", Timestamp),
        Field("amount", Int64),
        Field("note", String),
    ],
)


def cents(record):
    if record.get("note") == "test":
        return None
    return {"user_id": record["user_id"], "ts": record["ts"], "amount": record["amount"]}


def aggregate_view(
    windows=(timedelta(minutes=5), timedelta(minutes=15)),
    mode: str = "continuous",
    lateness: timedelta = timedelta(days=1),
    functions=FUNCTIONS,
    dtype=Int64,
) -> StreamFeatureView:
    features = [Aggregate(Field("amount", dtype), f, w) for w in windows for f in functions]
    return StreamFeatureView(
        name="payment_stats",
        source=payments,
        entities=[user],
        features=features,
        function=cents,
        aggregation_interval=timedelta(minutes=1),
        stream_processing_mode=mode,
        allowed_lateness=lateness,
        online=True,
    )


def latest_view(
    ttl: timedelta | None = None, allowed_lateness: timedelta = DEFAULT_ALLOWED_LATENESS
) -> StreamFeatureView:
    """A plain view of each user's latest payment (amount and note)."""
    return StreamFeatureView(
        name="last_payment",
        source=payments,
        entities=[user],
        features=[Attribute("amount", Int64), Attribute("note", String)],
        ttl=ttl,
        allowed_lateness=allowed_lateness,
        online=True,
    )


def processor(
    tmp_path, view: StreamFeatureView, table_id: str = "prod/payment_stats/g1", *, offline: bool = False
) -> StreamProcessor:
    """The view's processor on a SQLite online store in ``tmp_path`` (and, with ``offline``, its event
    log in a Delta offline store there)."""
    online = SQLiteOnlineStore(tmp_path / "online.db")
    store = SQLiteStreamStore(online)
    spec = view.spec()
    log = event_log(tmp_path, spec, table_id) if offline else None
    return StreamProcessor(spec, table_id, store, transform=view if view.function else None, event_log=log)


def event_log(tmp_path, spec, table_id: str = "prod/payment_stats/g1"):
    from featureplane.offline_stores.delta import DeltaOfflineStore
    from featureplane.offline_stores.event_log_delta import DeltaEventLog

    return DeltaEventLog(DeltaOfflineStore(path=tmp_path / "offline"), table_id, spec)


def record(shard: str, sequence: int, user_id: str, ts: datetime, amount, note: str = "") -> StreamRecord:
    return StreamRecord(shard, sequence, {"user_id": user_id, "ts": ts, "amount": amount, "note": note})


def us(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)
