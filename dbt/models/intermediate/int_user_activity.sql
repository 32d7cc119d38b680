-- Who did something, as which persona, on which UTC day: the base of "active builders" and
-- "active end users". A builder is active when they log in as a builder or work on their
-- projects and listings (test chats in the builder studio included); an end user when they
-- log in as an end user or buy. Visitors using an end user's widget do not make the end user
-- active (they did nothing themselves).
with activity as (
    select user_id, persona, logged_in_at as acted_at
    from {{ ref('stg_session_login') }}
    where persona in ('builder', 'end_user')

    union all
    select builder_id, 'builder', created_at from {{ ref('stg_project_created') }}

    union all
    select changed_by, 'builder', changed_at
    from {{ ref('stg_project_status_changed') }}
    where changed_by = builder_id

    union all
    select builder_id, 'builder', occurred_at from {{ ref('stg_listing_published') }}

    -- Studio chats count for the project's own builder, not for an administrator trying it.
    union all
    select chats.user_id, 'builder', chats.answered_at
    from {{ ref('stg_chat_message') }} as chats
    inner join {{ ref('stg_project_created') }} as projects
        on chats.project_id = projects.project_id and chats.user_id = projects.builder_id
    where chats.channel = 'studio'

    union all
    select buyer_id, 'end_user', created_at from {{ ref('stg_purchase_created') }}

    union all
    select buyer_id, 'end_user', completed_at from {{ ref('stg_purchase_completed') }}
)

select distinct
    user_id,
    persona,
    {{ utc_day('acted_at') }} as activity_day
from activity
where user_id is not null
