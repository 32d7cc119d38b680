with landed as ({{ landed_events('user.created') }})

select
    event_id,
    subject_id as user_id,
    -- NULL for accounts made by `bazaar create-admin`.
    actor_id as created_by,
    {{ payload_text('persona') }} as default_persona,
    {{ payload_text_list('personas') }} as personas,
    list_contains({{ payload_text_list('personas') }}, 'builder') as is_builder,
    list_contains({{ payload_text_list('personas') }}, 'end_user') as is_end_user,
    list_contains({{ payload_text_list('personas') }}, 'super_admin') as is_super_admin,
    {{ payload_text('plan') }} as plan,
    {{ payload_bool('signup') }} as is_self_signup,
    occurred_at as created_at,
    landed_at
from landed
