with landed as ({{ landed_events('payout.created') }})

select
    {{ payout_columns() }},
    occurred_at as created_at,
    landed_at
from landed
