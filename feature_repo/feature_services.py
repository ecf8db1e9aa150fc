from feature_views.transactions import user_daily_spend
from feature_views.users import user_profile

from featureplane import FeatureService

fraud_detection = FeatureService(
    name="fraud_detection",
    features=[
        user_daily_spend,
        user_profile[["age", "country", "credit_limit"]],
    ],
    owner="fraud-team@example.com",
    description="Features of the card-fraud model: yesterday's spending and the card holder's profile.",
)
