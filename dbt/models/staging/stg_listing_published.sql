with landed as ({{ landed_events('listing.published') }})

select
    {{ listing_columns() }},
    landed_at
from landed
