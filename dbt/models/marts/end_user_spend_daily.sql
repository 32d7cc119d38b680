-- What each buyer spent per UTC day and currency; a refund counts on the day it was refunded.
with purchases as (
    select * from {{ ref('int_purchases') }}
),

movements as (
    select completed_day as day, currency, buyer_id, 1 as purchases, gross_minor as spend_minor, 0 as refunds, 0 as refunded_minor
    from purchases
    union all
    select refunded_day, currency, buyer_id, 0, 0, 1, refunded_gross_minor
    from purchases
    where is_refunded
)

select
    day,
    currency,
    buyer_id,
    cast(sum(purchases) as bigint) as purchases,
    cast(sum(spend_minor) as bigint) as spend_minor,
    cast(sum(refunds) as bigint) as refunds,
    cast(sum(refunded_minor) as bigint) as refunded_minor
from movements
group by all
