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
        user_transaction_counts_5m,
    ],
    owner="fraud-team@example.com",
    description=(
        "Features of the card-fraud model: yesterday's spending, the card holder's profile, their "
        "transaction counts and amounts over sliding windows, how the amount being authorised "
        "compares with their last 30 days (sent as requestContextMap.amount), and their payments of "
        "the last five minutes as they are pushed (a stream view)."
    ),
)
