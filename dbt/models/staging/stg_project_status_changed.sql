with landed as ({{ landed_events('project.status_changed') }})

select
    event_id,
    subject_id as project_id,
    {{ payload_text('ownerId') }} as builder_id,
    actor_id as changed_by,
    {{ payload_text('from') }} as from_status,
    {{ payload_text('to') }} as to_status,
    occurred_at as changed_at,
    landed_at
from landed
