-- One row per completed purchase: how its gross was split, and whether it was refunded.
select
    purchase_id,
    listing_id,
    project_id,
    builder_id,
    buyer_id,
    currency,
    completed_at,
    completed_day,
    gross_minor,
    processor_fee_minor,
    platform_fee_minor,
    builder_share_minor,
    platform_fee_bps,
    is_refunded,
    refunded_at,
    refunded_day
from {{ ref('int_purchases') }}
