-- The big one (10M+ rows): one pass over the new landing partitions, deduplicated on event_id,
-- with the UTC day precomputed so the usage marts group on a DATE.
with landed as ({{ landing_rows('usage') }})

select
    event_id,
    widget_id,
    project_id,
    end_user_id,
    visitor_id,
    session_id,
    customer_id,
    kind,
    -- 1 per impression/open/message, the token count for `tokens`.
    "count" as quantity,
    latency_ms,
    client_ts,
    received_at,
    {{ utc_day('received_at') }} as received_day,
    landed_at,
    -- When this build staged the row: rows a later build adds have a later `staged_at`, so the
    -- usage marts rework only what is new (int_usage_by_period) whatever order files land in.
    {{ build_started_at() }} as staged_at
from landed
-- Copies of one beacon can differ (a client retry is stamped anew when accepted) and can share
-- a file: the tie-break makes the surviving copy the same in every build, incremental or full.
qualify row_number() over (
    partition by event_id order by landed_at, received_at, kind, "count", visitor_id
) = 1
