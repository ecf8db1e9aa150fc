from featureplane import BatchSource

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
