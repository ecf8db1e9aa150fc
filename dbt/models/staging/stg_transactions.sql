{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='ts') }}
-- Card transactions, cleaned: one row per authorisation. Built one day at a time (microbatch): dbt
-- reads only the batch's day of raw.transactions (its event_time is ts) and replaces that day here.
select
    transaction_id,
    user_id,
    merchant_id,
    lower(category) as category,
    upper(country) as country,
    amount,
    is_fraud,
    ts
from {{ source('raw', 'transactions') }}
