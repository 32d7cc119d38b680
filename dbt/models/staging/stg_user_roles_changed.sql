with landed as ({{ landed_events('user.roles_changed') }})

select
    event_id,
    subject_id as user_id,
    actor_id as changed_by,
    {{ payload_text_list('from') }} as personas_before,
    {{ payload_text_list('to') }} as personas_after,
    occurred_at as changed_at,
    landed_at
from landed
