-- Projects and their marketplace listing, for names and prices next to the numbers.
select
    project_id,
    builder_id,
    name,
    created_at,
    listing_id,
    price_minor,
    currency,
    listing_status
from {{ ref('int_projects') }}
