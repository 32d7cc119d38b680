-- Widget usage per day, ISO week and month. Distinct counts (sessions, visitors, customers)
-- do not add up across days, so every grain is computed from the beacons, in one pass with
-- grouping sets rather than three scans of the biggest table.
with beacons as (
    select
        widget_id,
        project_id,
        end_user_id,
        visitor_id,
        session_id,
        customer_id,
        kind,
        quantity,
        latency_ms,
        received_at,
        received_day as day,
        {{ period_start('week', 'received_day') }} as week_start,
        {{ period_start('month', 'received_day') }} as month_start
    from {{ ref('stg_usage_beacons') }}
),

grouped as (
    select
        case
            when grouping(day) = 0 then 'day'
            when grouping(week_start) = 0 then 'week'
            else 'month'
        end as grain,
        coalesce(day, week_start, month_start) as period_start,
        widget_id,
        -- A widget belongs to one project and one end user. Beacons say which; should they ever
        -- disagree, the earliest wins, so every build credits the same owner (the API lets
        -- only admins read a widget whose rows name several owners).
        arg_min(project_id, received_at) as project_id,
        arg_min(end_user_id, received_at) as end_user_id,
        coalesce(sum(quantity) filter (where kind = 'impression'), 0) as impressions,
        coalesce(sum(quantity) filter (where kind = 'open'), 0) as opens,
        coalesce(sum(quantity) filter (where kind = 'message'), 0) as messages,
        coalesce(sum(quantity) filter (where kind = 'tokens'), 0) as tokens,
        count(distinct session_id) as sessions,
        count(distinct visitor_id) as visitors,
        count(distinct customer_id) as customers,
        avg(latency_ms) filter (where kind = 'message') as avg_latency_ms
    from beacons
    group by grouping sets ((widget_id, day), (widget_id, week_start), (widget_id, month_start))
)

select
    grouped.grain,
    grouped.period_start,
    grouped.widget_id,
    grouped.project_id,
    projects.builder_id,
    grouped.end_user_id,
    cast(grouped.impressions as bigint) as impressions,
    cast(grouped.opens as bigint) as opens,
    cast(grouped.messages as bigint) as messages,
    cast(grouped.tokens as bigint) as tokens,
    grouped.sessions,
    grouped.visitors,
    grouped.customers,
    grouped.avg_latency_ms
from grouped
left join {{ ref('int_projects') }} as projects
    on grouped.project_id = projects.project_id
