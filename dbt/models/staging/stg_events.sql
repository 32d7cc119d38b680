-- Every domain event once: the landing `events` stream deduplicated on event_id. The per-type
-- staging models read this table, so an incremental build opens only the new landing
-- partitions once, whatever the number of event types.
with landed as ({{ landing_rows('events') }})

select
    event_id,
    type,
    schema_version,
    occurred_at,
    actor_id,
    subject_id,
    payload,
    landed_at
from landed
-- Embedded mode's beacons are outbox rows of this type; they belong to the usage stream.
where type <> 'usage.beacon'
qualify row_number() over (partition by event_id order by landed_at) = 1
