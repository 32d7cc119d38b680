-- Every completed purchase with its refund, if any: the split of record for revenue marts.
-- A purchase is refunded at most once (a second refund is refused upstream); should two
-- refund events ever exist for one purchase, the first counts.
with completed as (
    select * from {{ ref('stg_purchase_completed') }}
),

refunds as (
    select *
    from {{ ref('stg_purchase_refunded') }}
    qualify row_number() over (partition by purchase_id order by refunded_at, event_id) = 1
)

select
    completed.purchase_id,
    completed.listing_id,
    completed.project_id,
    completed.builder_id,
    completed.buyer_id,
    completed.currency,
    completed.completed_at,
    {{ utc_day('completed.completed_at') }} as completed_day,
    completed.gross_minor,
    completed.processor_fee_minor,
    completed.platform_fee_minor,
    completed.builder_share_minor,
    completed.platform_fee_bps,
    refunds.purchase_id is not null as is_refunded,
    refunds.refunded_at,
    {{ utc_day('refunds.refunded_at') }} as refunded_day,
    -- What the refund reversed: the sale's split as the refund event states it (0 when not
    -- refunded), so net amounts are plain subtractions downstream.
    coalesce(refunds.gross_minor, 0) as refunded_gross_minor,
    coalesce(refunds.processor_fee_minor, 0) as refunded_processor_fee_minor,
    coalesce(refunds.platform_fee_minor, 0) as refunded_platform_fee_minor,
    coalesce(refunds.builder_share_minor, 0) as refunded_builder_share_minor
from completed
left join refunds
    on completed.purchase_id = refunds.purchase_id
