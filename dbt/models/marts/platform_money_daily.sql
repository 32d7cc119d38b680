-- The platform's money per UTC day and currency, from the ledger alone (docs/events.md,
-- "Money"). Credits are negative in the ledger, so revenue accounts are negated here.
with entries as (
    select * from {{ ref('int_ledger_entries') }}
),

days as (
    select
        posted_day as day,
        currency,
        -- What buyers paid for marketplace sales.
        cast(coalesce(sum(amount_minor) filter (where kind = 'settlement' and leg = 'gross'), 0) as bigint) as gmv_minor,
        -- Gross handed back to buyers (the refund's gross leg is a credit on cash).
        cast(coalesce(-sum(amount_minor) filter (where kind = 'refund' and leg = 'gross'), 0) as bigint) as refunded_minor,
        -- What the processor kept: its fee on sales and invoices; a refund reverses the fee leg
        -- and posts it again as unrefunded_processor_fee, so refunded sales still count.
        cast(coalesce(-sum(amount_minor) filter (
            where account = 'platform:cash' and leg in ('processor_fee', 'unrefunded_processor_fee')
        ), 0) as bigint) as processor_fees_minor,
        -- Platform fees net of refunds (a refund debits platform:revenue back).
        cast(coalesce(-sum(amount_minor) filter (where account = 'platform:revenue'), 0) as bigint) as platform_fees_minor,
        -- Plans and charges, net of tax.
        cast(coalesce(-sum(amount_minor) filter (where account = 'platform:billing_revenue'), 0) as bigint) as billing_revenue_minor,
        -- Processor fees the platform bears: on invoices, and on refunded sales.
        cast(coalesce(sum(amount_minor) filter (where account = 'platform:fee_expense'), 0) as bigint) as fee_expense_minor,
        cast(coalesce(sum(amount_minor) filter (
            where kind = 'payout_paid' and account = 'platform:payouts_in_transit'
        ), 0) as bigint) as payouts_paid_minor
    from entries
    group by all
)

select
    *,
    -- The platform's net revenue: its fees kept, plus billing, minus the fees it bears.
    platform_fees_minor + billing_revenue_minor - fee_expense_minor as net_revenue_minor
from days
