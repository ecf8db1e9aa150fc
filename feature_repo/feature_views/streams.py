from datetime import timedelta

from data_sources import FEATURE_START, transactions_stream
from entities import user

from featureplane import Aggregate, Field, Float64, String, stream_feature_view


@stream_feature_view(
    source=transactions_stream,
    entities=[user],
    mode="python",
    aggregation_interval=timedelta(minutes=1),
    features=[
        Aggregate(Field("amount", Float64), "count", timedelta(minutes=5)),
        Aggregate(Field("amount", Float64), "sum", timedelta(minutes=5)),
        Aggregate(Field("merchant_id", String), "count_distinct", timedelta(minutes=5)),
    ],
    stream_processing_mode="continuous",
    allowed_lateness=timedelta(minutes=5),
    feature_start_time=FEATURE_START,
    batch_schedule=timedelta(days=1),
    online=True,
    offline=True,
    owner="fraud-team@example.com",
    tags={"domain": "payments"},
)
def user_transaction_counts_5m(transaction):
    """Each card holder's payments in the last five minutes, counted as they are pushed: a burst of
    payments shows within a second, long before the next daily materialization. Refunds and reversals
    (amounts of zero or less) are not payments and are dropped.

    Its history (for training sets) is backfilled from the source's batch_config, raw.transactions,
    in daily partitions from FEATURE_START; the pushed events take over from the hand-over boundary."""
    if transaction["amount"] <= 0:
        return None
    return transaction
