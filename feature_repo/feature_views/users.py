from datetime import timedelta

from data_sources import users
from entities import user
from feature_views.transactions import FEATURE_START

from featureplane import (
    Attribute,
    Between,
    Float64,
    InSet,
    Int64,
    NotNull,
    String,
    Timestamp,
    batch_feature_view,
)

COUNTRIES = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "BR", "IN"]


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
    expectations=[
        Between("age", 18, 120),
        InSet("country", COUNTRIES),
        NotNull("signup_ts"),
        InSet("credit_limit", [1000, 2500, 5000, 10000, 25000], severity="warn"),
    ],
)
def user_profile(users):
    """Card holders' profile attributes, as of their latest update."""
    return f"""
        SELECT user_id, updated_at, age, country, credit_limit, signup_ts
        FROM {users}
    """
