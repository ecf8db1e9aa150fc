from datetime import timedelta

from data_sources import FEATURE_START, transactions
from entities import user

from featureplane import Aggregate, Attribute, Between, Float64, Int64, MeanBetween, batch_feature_view


@batch_feature_view(
    sources=[transactions],
    entities=[user],
    mode="snowflake_sql",
    features=[
        Attribute("spend", Float64),
        Attribute("transaction_count", Int64),
        Attribute("max_amount", Float64),
        Attribute("distinct_merchants", Int64),
        Attribute("night_share", Float64),
    ],
    timestamp_field="ts",
    feature_start_time=FEATURE_START,
    batch_schedule=timedelta(days=1),
    ttl=timedelta(days=1),
    online=True,
    offline=True,
    owner="fraud-team@example.com",
    tags={"domain": "payments"},
    expectations=[
        Between("spend", min_value=0),
        Between("transaction_count", min_value=1),
        Between("night_share", 0, 1),
        Between("max_amount", 0, 10_000, severity="warn"),
        MeanBetween("spend", 1, 1_000, severity="warn"),
    ],
)
def user_daily_spend(transactions):
    """Each user's spending on the previous day.

    A day's row is stamped at the day's last microsecond, so it is only visible once the day is over,
    and it expires a day later: a user with no transactions yesterday has no value.
    """
    return f"""
        SELECT
            user_id,
            DATEADD(microsecond, -1, DATEADD(day, 1, DATE_TRUNC('day', ts))) AS ts,
            SUM(amount) AS spend,
            COUNT(*) AS transaction_count,
            MAX(amount) AS max_amount,
            COUNT(DISTINCT merchant_id) AS distinct_merchants,
            AVG(IFF(HOUR(ts) < 5, 1.0, 0.0)::FLOAT) AS night_share
        FROM {transactions}
        GROUP BY user_id, DATE_TRUNC('day', ts)
    """


@batch_feature_view(
    sources=[transactions],
    entities=[user],
    mode="snowflake_sql",
    aggregation_interval=timedelta(hours=1),
    features=[
        *(Aggregate("amount", "count", window) for window in ("1h", "1d", "7d", "30d")),
        *(Aggregate("amount", "sum", window) for window in ("1h", "1d", "7d", "30d")),
        Aggregate("amount", "mean", "30d"),
        Aggregate("amount", "stddev_samp", "30d"),
    ],
    timestamp_field="ts",
    feature_start_time=FEATURE_START,
    batch_schedule=timedelta(days=1),
    online=True,
    offline=True,
    owner="fraud-team@example.com",
    tags={"domain": "payments"},
)
def user_transaction_metrics(transactions):
    """Each user's transaction counts and amounts over the last hour, day, week and 30 days.

    Stored as hourly partial aggregates; a value at time t covers the windows ending at t's hour.
    """
    return f"""
        SELECT user_id, ts, amount
        FROM {transactions}
    """
