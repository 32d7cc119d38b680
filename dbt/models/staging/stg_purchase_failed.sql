with landed as ({{ landed_events('purchase.failed') }})

select
    {{ purchase_columns() }},
    {{ payload_text('reason') }} as reason,
    occurred_at as failed_at,
    landed_at
from landed
