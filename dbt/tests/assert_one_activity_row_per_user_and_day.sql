-- int_user_daily_activity has at most one row per user and day.
{{ config(severity='error') }}
select user_id, activity_date, count(*) as n_rows
from {{ ref('int_user_daily_activity') }}
group by user_id, activity_date
having count(*) > 1
