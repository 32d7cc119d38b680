with landed as ({{ landed_events('session.login') }})

-- The payload's `ip` is personal data and no mart needs it: it is not staged.
select
    event_id,
    subject_id as session_id,
    actor_id as user_id,
    {{ payload_text('persona') }} as persona,
    occurred_at as logged_in_at,
    landed_at
from landed
