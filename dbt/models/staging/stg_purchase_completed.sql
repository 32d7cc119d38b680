with landed as ({{ landed_events('purchase.completed') }})

select
    {{ purchase_columns() }},
    {{ payload_text('paymentId') }} as payment_id,
    {{ payload_text('invoiceId') }} as invoice_id,
    {{ split_columns() }},
    cast(payload ->> '$.platformFeeBps' as integer) as platform_fee_bps,
    occurred_at as completed_at,
    landed_at
from landed
