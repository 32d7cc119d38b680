with landed as ({{ landed_events('payout.failed') }})

select
    {{ payout_columns() }},
    {{ payload_text('reason') }} as reason,
    cast(payload ->> '$.attempts' as integer) as attempts,
    occurred_at as failed_at,
    landed_at
from landed
