with landed as ({{ landed_events('purchase.created') }})

select
    {{ purchase_columns() }},
    occurred_at as created_at,
    landed_at
from landed
