with landed as ({{ landed_events('payout.paid') }})

select
    {{ payout_columns() }},
    {{ payload_text('providerTransferId') }} as provider_transfer_id,
    cast(payload ->> '$.attempts' as integer) as attempts,
    occurred_at as paid_at,
    landed_at
from landed
