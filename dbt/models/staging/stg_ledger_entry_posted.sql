with landed as ({{ landed_events('ledger.entry_posted') }})

-- One row per ledger transaction; int_ledger_entries flattens `entries`.
select
    event_id,
    subject_id as transaction_id,
    {{ payload_text('kind') }} as kind,
    {{ payload_text('reference') }} as reference,
    {{ payload_text('currency') }} as currency,
    {{ payload_text('builderId') }} as builder_id,
    {{ payload_text('projectId') }} as project_id,
    {{ payload_text('purchaseId') }} as purchase_id,
    coalesce(
        from_json(payload -> '$.entries', '[{"account": "VARCHAR", "leg": "VARCHAR", "amountMinor": "BIGINT"}]'),
        []
    ) as entries,
    actor_id,
    occurred_at as posted_at,
    landed_at
from landed
