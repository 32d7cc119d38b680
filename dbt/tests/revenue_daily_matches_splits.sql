-- revenue_daily is a regrouping of fct_revenue_splits: per currency, its totals equal the
-- splits' totals to the cent.
-- A refresh runs it (tag `refresh`); Dagster shows it as a check of revenue_daily.
{{ config(tags=['refresh'], meta={'dagster': {'ref': {'name': 'revenue_daily'}}}) }}
with splits as (
    select
        currency,
        sum(gross_minor) as gross_minor,
        sum(builder_share_minor) as builder_share_minor,
        sum(gross_minor) filter (where is_refunded) as refunded_gross_minor,
        count(*) as sales,
        count(*) filter (where is_refunded) as refunds
    from {{ ref('fct_revenue_splits') }}
    group by currency
),

daily as (
    select
        currency,
        sum(gross_minor) as gross_minor,
        sum(builder_share_minor) as builder_share_minor,
        sum(refunded_gross_minor) as refunded_gross_minor,
        sum(sales) as sales,
        sum(refunds) as refunds
    from {{ ref('revenue_daily') }}
    group by currency
)

select *
from splits
full outer join daily using (currency)
where splits.gross_minor is distinct from daily.gross_minor
    or splits.builder_share_minor is distinct from daily.builder_share_minor
    or coalesce(splits.refunded_gross_minor, 0) is distinct from daily.refunded_gross_minor
    or splits.sales is distinct from daily.sales
    or splits.refunds is distinct from daily.refunds
