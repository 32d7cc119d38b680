with landed as ({{ landed_events('project.deleted') }})

select
    event_id,
    subject_id as project_id,
    actor_id as deleted_by,
    {{ payload_text('status') }} as status_when_deleted,
    occurred_at as deleted_at,
    landed_at
from landed
