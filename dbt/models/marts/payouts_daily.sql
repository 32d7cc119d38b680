-- Payouts per UTC day, currency and builder: opened, paid and failed, each on the day it
-- happened (a payout opened on Monday and paid on Tuesday counts once on each day).
with movements as (
    select {{ utc_day('created_at') }} as day, currency, builder_id, 'created' as movement, amount_minor
    from {{ ref('stg_payout_created') }}
    union all
    select {{ utc_day('paid_at') }}, currency, builder_id, 'paid', amount_minor
    from {{ ref('stg_payout_paid') }}
    union all
    select {{ utc_day('failed_at') }}, currency, builder_id, 'failed', amount_minor
    from {{ ref('stg_payout_failed') }}
)

select
    day,
    currency,
    builder_id,
    count(*) filter (where movement = 'created') as payouts_created,
    cast(coalesce(sum(amount_minor) filter (where movement = 'created'), 0) as bigint) as created_minor,
    count(*) filter (where movement = 'paid') as payouts_paid,
    cast(coalesce(sum(amount_minor) filter (where movement = 'paid'), 0) as bigint) as paid_minor,
    count(*) filter (where movement = 'failed') as payouts_failed,
    cast(coalesce(sum(amount_minor) filter (where movement = 'failed'), 0) as bigint) as failed_minor
from movements
group by all
