from datetime import timedelta

from entities import user
from feature_views.transactions import FEATURE_START

from featureplane import Attribute, DbtModel, Float64, Int64, batch_feature_view

# A source over a dbt model: the view's Dagster asset is downstream of the model's asset, and a change to
# the model's SQL (or anything upstream of it in dbt) plans as a recreate of this view.
user_daily_activity_model = DbtModel(
    "int_user_daily_activity",
    timestamp_field="ts",
    owner="analytics@example.com",
)


@batch_feature_view(
    sources=[user_daily_activity_model],
    entities=[user],
    mode="snowflake_sql",
    features=[
        Attribute("foreign_share", Float64),
        Attribute("online_share", Float64),
        Attribute("distinct_categories", Int64),
    ],
    timestamp_field="ts",
    feature_start_time=FEATURE_START,
    batch_schedule=timedelta(days=1),
    ttl=timedelta(days=1),
    online=True,
    offline=True,
    owner="fraud-team@example.com",
    tags={"domain": "payments"},
)
def user_daily_activity(activity):
    """How each user spent on the previous day: abroad, online, across categories (from the dbt model
    int_user_daily_activity)."""
    return f"""
        SELECT
            user_id,
            ts,
            foreign_transaction_count / transaction_count AS foreign_share,
            online_amount / NULLIF(total_amount, 0) AS online_share,
            distinct_categories
        FROM {activity}
    """
