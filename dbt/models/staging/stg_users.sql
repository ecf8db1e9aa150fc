-- Card holders' current profiles, one row per user.
select
    user_id,
    signup_ts,
    upper(country) as country,
    age,
    credit_limit,
    updated_at
from {{ source('raw', 'users') }}
