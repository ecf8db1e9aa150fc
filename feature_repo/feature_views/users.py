from datetime import timedelta

from data_sources import users
from entities import user
from feature_views.transactions import FEATURE_START

from featureplane import Attribute, Float64, Int64, String, Timestamp, batch_feature_view


@batch_feature_view(
    sources=[users],
    entities=[user],
    mode="snowflake_sql",
    features=[
        Attribute("age", Int64),
        Attribute("country", String),
        Attribute("credit_limit", Float64),
        Attribute("signup_ts", Timestamp),
    ],
    timestamp_field="updated_at",
    feature_start_time=FEATURE_START,
    batch_schedule=timedelta(days=1),
    online=True,
    offline=True,
    owner="fraud-team@example.com",
    tags={"domain": "customers"},
)
def user_profile(users):
    """Card holders' profile attributes, as of their latest update."""
    return f"""
        SELECT user_id, updated_at, age, country, credit_limit, signup_ts
        FROM {users}
    """
