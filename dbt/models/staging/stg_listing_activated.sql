with landed as ({{ landed_events('listing.activated') }})

select
    {{ listing_columns() }},
    {{ payload_text('from') }} as from_status,
    {{ payload_text('reason') }} as reason,
    landed_at
from landed
