-- Accounts as the events describe them: personas at sign-up and now (the last
-- user.roles_changed wins).
with created as (
    select * from {{ ref('stg_user_created') }}
),

latest_roles as (
    select user_id, personas_after
    from {{ ref('stg_user_roles_changed') }}
    qualify row_number() over (partition by user_id order by changed_at desc, event_id desc) = 1
)

select
    created.user_id,
    created.created_at,
    {{ utc_day('created.created_at') }} as created_day,
    created.is_self_signup,
    created.default_persona,
    created.personas as signup_personas,
    created.is_builder as signed_up_as_builder,
    created.is_end_user as signed_up_as_end_user,
    coalesce(latest_roles.personas_after, created.personas) as personas
from created
left join latest_roles
    on created.user_id = latest_roles.user_id
