from datetime import datetime

from featureplane import BatchSource, Field, Float64, StreamSource, String, Timestamp

# The first day the example's feature views are built from (their feature_start_time).
FEATURE_START = datetime(2026, 8, 1)

transactions = BatchSource(
    name="transactions",
    table="raw.transactions",
    timestamp_field="ts",
    description="Card transactions, one row per authorisation.",
    owner="payments-data@example.com",
)

users = BatchSource(
    name="users",
    table="raw.users",
    timestamp_field="updated_at",
    description="Card holders' profiles; a row is written whenever a profile changes.",
    owner="payments-data@example.com",
)

# The same card transactions as they happen, pushed through the ingest API
# (POST /api/v1/ingest with {"records": {"transactions_stream": [{"record": {...}}]}}).
transactions_stream = StreamSource(
    name="transactions_stream",
    timestamp_field="ts",
    batch_config=transactions,
    push_schema=[
        Field("transaction_id", String),
        Field("user_id", String),
        Field("merchant_id", String),
        Field("amount", Float64),
        Field("ts", Timestamp),
    ],
    description="Card transactions pushed as they are authorised; raw.transactions holds them historically.",
    owner="payments-data@example.com",
)
