with landed as ({{ landed_events('listing.viewed') }})

select
    event_id,
    subject_id as listing_id,
    {{ payload_text('projectId') }} as project_id,
    {{ payload_text('builderId') }} as builder_id,
    {{ payload_text('viewerId') }} as viewer_id,
    {{ payload_bool('anonymous') }} as is_anonymous,
    -- The day the view was counted for (its deduplication key), not recomputed from occurred_at:
    -- one viewer is one view per listing and day, even for a view a moment before midnight.
    cast({{ payload_text('day') }} as date) as view_day,
    occurred_at,
    landed_at
from landed
