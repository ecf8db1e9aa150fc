from feature_views.realtime import transaction_amount_vs_history
from feature_views.streams import user_transaction_counts_5m
from feature_views.transactions import user_daily_spend, user_transaction_metrics
from feature_views.users import user_profile

from featureplane import FeatureService

fraud_detection = FeatureService(
    name="fraud_detection",
    features=[
        user_daily_spend,
        user_profile[["age", "country", "credit_limit"]],
        user_transaction_metrics,
        transaction_amount_vs_history,
    ],
    owner="fraud-team@example.com",
    description=(
        "Features of the card-fraud model: yesterday's spending, the card holder's profile, their "
        "transaction counts and amounts over sliding windows, and how the amount being authorised "
        "compares with their last 30 days (sent as requestContextMap.amount)."
    ),
)

# fraud_detection plus the payments of the last five minutes, counted as they are pushed. A separate
# service while the stream view has no backfilled history (docs/streams.md, In the example repository).
fraud_detection_streaming = FeatureService(
    name="fraud_detection_streaming",
    features=[*fraud_detection.features, user_transaction_counts_5m],
    owner="fraud-team@example.com",
    description="fraud_detection and each card holder's payments of the last five minutes (a stream view).",
)
