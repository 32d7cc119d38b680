-- Every ledger transaction sums to zero (Postgres refuses to commit one that does not); a
-- row here means an entry was lost or doubled between the outbox and the warehouse.
{{ config(tags=['refresh']) }}
select transaction_id, currency, sum(amount_minor) as imbalance_minor
from {{ ref('fct_ledger_entries') }}
group by transaction_id, currency
having sum(amount_minor) <> 0
