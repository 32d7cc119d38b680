-- Sales and refunds per UTC day, currency and project. A sale counts on the day it completed,
-- its refund on the day it was refunded, so a day's net can be negative; summed over all days
-- the net equals the splits of the purchases that were not refunded.
with purchases as (
    select * from {{ ref('int_purchases') }}
),

sales as (
    select
        completed_day as day,
        currency,
        project_id,
        builder_id,
        count(*) as sales,
        sum(gross_minor) as gross_minor,
        sum(processor_fee_minor) as processor_fee_minor,
        sum(platform_fee_minor) as platform_fee_minor,
        sum(builder_share_minor) as builder_share_minor
    from purchases
    group by all
),

refunds as (
    select
        refunded_day as day,
        currency,
        project_id,
        builder_id,
        count(*) as refunds,
        sum(refunded_gross_minor) as refunded_gross_minor,
        sum(refunded_platform_fee_minor) as refunded_platform_fee_minor,
        sum(refunded_builder_share_minor) as refunded_builder_share_minor
    from purchases
    where is_refunded
    group by all
),

days as (
    select
        coalesce(sales.day, refunds.day) as day,
        coalesce(sales.currency, refunds.currency) as currency,
        coalesce(sales.project_id, refunds.project_id) as project_id,
        coalesce(sales.builder_id, refunds.builder_id) as builder_id,
        coalesce(sales.sales, 0) as sales,
        coalesce(sales.gross_minor, 0) as gross_minor,
        coalesce(sales.processor_fee_minor, 0) as processor_fee_minor,
        coalesce(sales.platform_fee_minor, 0) as platform_fee_minor,
        coalesce(sales.builder_share_minor, 0) as builder_share_minor,
        coalesce(refunds.refunds, 0) as refunds,
        coalesce(refunds.refunded_gross_minor, 0) as refunded_gross_minor,
        coalesce(refunds.refunded_platform_fee_minor, 0) as refunded_platform_fee_minor,
        coalesce(refunds.refunded_builder_share_minor, 0) as refunded_builder_share_minor
    from sales
    full outer join refunds
        on sales.day = refunds.day
        and sales.currency = refunds.currency
        and sales.project_id = refunds.project_id
        and sales.builder_id = refunds.builder_id
)

select
    day,
    currency,
    project_id,
    builder_id,
    sales,
    cast(gross_minor as bigint) as gross_minor,
    cast(processor_fee_minor as bigint) as processor_fee_minor,
    cast(platform_fee_minor as bigint) as platform_fee_minor,
    cast(builder_share_minor as bigint) as builder_share_minor,
    refunds,
    cast(refunded_gross_minor as bigint) as refunded_gross_minor,
    cast(refunded_platform_fee_minor as bigint) as refunded_platform_fee_minor,
    cast(refunded_builder_share_minor as bigint) as refunded_builder_share_minor,
    cast(gross_minor - refunded_gross_minor as bigint) as net_gross_minor,
    cast(builder_share_minor - refunded_builder_share_minor as bigint) as net_builder_share_minor
from days
