-- One row per ledger entry (transaction, account, leg), flattened from ledger.entry_posted.
-- Amounts are signed minor units, debits positive (docs/events.md, "Money").
with transactions as (
    select * from {{ ref('stg_ledger_entry_posted') }}
),

entries as (
    select
        transactions.*,
        unnest(entries) as entry
    from transactions
)

select
    transaction_id,
    kind,
    reference,
    currency,
    entry.account as account,
    entry.leg as leg,
    entry.amountMinor as amount_minor,
    -- A builder's payable account names them (`builder:<id>:payable`); the payload's builderId
    -- covers the platform-side entries of the same transaction.
    coalesce(
        case when entry.account like 'builder:%' then split_part(entry.account, ':', 2) end,
        builder_id
    ) as builder_id,
    project_id,
    purchase_id,
    posted_at,
    {{ utc_day('posted_at') }} as posted_day,
    event_id
from entries
