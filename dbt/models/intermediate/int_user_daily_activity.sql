{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='ts') }}
-- Each user's activity per day, stamped at the day's last microsecond (ts): the day's numbers are only
-- known once it is over. ref('stg_transactions') is filtered to the batch's day by dbt.
with daily as (
    select
        t.user_id,
        date_trunc('day', t.ts) as activity_date,
        count(*) as transaction_count,
        sum(t.amount) as total_amount,
        sum(case when t.country <> u.country then 1 else 0 end) as foreign_transaction_count,
        sum(case when t.category = 'online' then t.amount else 0 end) as online_amount,
        count(distinct t.category) as distinct_categories
    from {{ ref('stg_transactions') }} as t
    left join {{ ref('stg_users') }} as u on t.user_id = u.user_id
    group by t.user_id, date_trunc('day', t.ts)
)

select
    user_id,
    activity_date,
    {{ dbt.dateadd('microsecond', -1, dbt.dateadd('day', 1, 'activity_date')) }} as ts,
    transaction_count,
    total_amount,
    foreign_transaction_count,
    online_amount,
    distinct_categories
from daily
