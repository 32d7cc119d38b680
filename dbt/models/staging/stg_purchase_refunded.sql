with landed as ({{ landed_events('purchase.refunded') }})

select
    {{ purchase_columns() }},
    actor_id as refunded_by,
    {{ payload_text('reason') }} as reason,
    -- The split of the sale being reversed, as on purchase.completed.
    {{ split_columns() }},
    occurred_at as refunded_at,
    landed_at
from landed
