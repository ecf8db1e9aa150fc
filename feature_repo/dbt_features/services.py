from dbt_features.activity import user_daily_activity
from feature_views.transactions import user_daily_spend
from feature_views.users import user_profile

from featureplane import FeatureService, dbt_feature_view

fraud_detection_v2 = FeatureService(
    name="fraud_detection_v2",
    features=[
        user_daily_spend,
        user_profile[["age", "country", "credit_limit"]],
        user_daily_activity,
        # Declared in dbt (dbt/models/features/_features.yml), so named rather than imported.
        dbt_feature_view("user_spend_7d"),
    ],
    owner="fraud-team@example.com",
    description="The card-fraud model's next version: fraud_detection plus the analysts' dbt features.",
)
