-- Widget usage per day, ISO week and month, as served: the incrementally maintained counts of
-- int_usage_by_period (see there why every period is counted from its beacons) with the
-- project's builder, looked up on every build so that a project the events describe later
-- gets its builder on every period, old ones included.
select
    usage.grain,
    usage.period_start,
    usage.widget_id,
    usage.project_id,
    projects.builder_id,
    usage.end_user_id,
    usage.impressions,
    usage.opens,
    usage.messages,
    usage.tokens,
    usage.sessions,
    usage.visitors,
    usage.customers,
    usage.avg_latency_ms
from {{ ref('int_usage_by_period') }} as usage
left join {{ ref('int_projects') }} as projects
    on usage.project_id = projects.project_id
