{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='ts') }}
-- Rolling 7-day spending per user, one row per user and active day. A feature view declared in
-- _features.yml: featureplane materializes it like any other (see docs/dbt.md).
with activity as (
    -- Unfiltered by dbt (.render()), so the rolling window can look back six days before the batch.
    select * from {{ ref('int_user_daily_activity').render() }}
    where {{ in_batch_window('ts', lookback_days=6) }}
),

active_days as (
    select user_id, activity_date, ts
    from activity
    where {{ in_batch_window('ts') }}
)

select
    d.user_id,
    d.ts,
    sum(a.total_amount) as spend_7d,
    sum(a.transaction_count) as transactions_7d,
    count(*) as active_days_7d,
    sum(a.total_amount) / sum(a.transaction_count) as avg_transaction_7d
from active_days as d
inner join activity as a
    on a.user_id = d.user_id
    and a.activity_date > {{ dbt.dateadd('day', -7, 'd.activity_date') }}
    and a.activity_date <= d.activity_date
group by d.user_id, d.ts
