-- The double-entry ledger as posted, one row per entry.
select
    transaction_id,
    account,
    leg,
    kind,
    reference,
    currency,
    amount_minor,
    builder_id,
    project_id,
    purchase_id,
    posted_at,
    posted_day
from {{ ref('int_ledger_entries') }}
