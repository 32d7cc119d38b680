with landed as ({{ landed_events('project.created') }})

select
    event_id,
    subject_id as project_id,
    {{ payload_text('ownerId') }} as builder_id,
    {{ payload_text('name') }} as name,
    {{ payload_text('llm') }} as llm,
    {{ payload_text('status') }} as status,
    occurred_at as created_at,
    landed_at
from landed
