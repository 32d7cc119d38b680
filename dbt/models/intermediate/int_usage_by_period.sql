-- Widget usage per day, ISO week and month, maintained incrementally: what `usage_by_period`
-- serves, without the builder (which comes from the events and may change after the usage).
--
-- Distinct counts (sessions, visitors, customers) do not add up across days, so a period is
-- always counted from all of its beacons, in one pass with grouping sets. A full build counts
-- every period. An incremental build recounts only the (widget, grain, period) rows that the
-- beacons staged since its watermark (`staged_at`, set by the build that staged them) fall
-- into, reading only the touched widgets' beacons from the earliest touched period on, and
-- replaces those rows (delete+insert on the grain): a near-real-time refresh costs the touched
-- widgets' current week and month, not the whole history.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['grain', 'period_start', 'widget_id'],
    on_schema_change='append_new_columns',
) }}

{%- set watermark = staged_watermark() -%}
{%- set earliest = none -%}
{%- if execute and is_incremental() -%}
    {#- The first day any touched period covers: weeks may start in the previous month. -#}
    {%- set query -%}
        select strftime(min(least(
            {{ period_start('week', 'received_day') }}, {{ period_start('month', 'received_day') }}
        )), '%Y-%m-%d')
        from {{ ref('stg_usage_beacons') }}
        where {{ staged_since(watermark) }}
    {%- endset -%}
    {%- set earliest = run_query(query).rows[0][0] -%}
{%- endif %}

with
{%- if is_incremental() %}

new_beacons as (
    select widget_id, received_day
    from {{ ref('stg_usage_beacons') }}
    where {{ staged_since(watermark) }}
),

-- The rows the new beacons change.
touched as (
    select distinct 'day' as grain, received_day as period_start, widget_id from new_beacons
    union
    select distinct 'week', {{ period_start('week', 'received_day') }}, widget_id from new_beacons
    union
    select distinct 'month', {{ period_start('month', 'received_day') }}, widget_id from new_beacons
),
{%- endif %}

beacons as (
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
        staged_at,
        received_day as day,
        {{ period_start('week', 'received_day') }} as week_start,
        {{ period_start('month', 'received_day') }} as month_start
    from {{ ref('stg_usage_beacons') }}
    {%- if is_incremental() %}
    where
        {%- if earliest %}
        received_day >= date '{{ earliest }}'
        and widget_id in (select widget_id from new_beacons)
        {%- else %}
        false  -- nothing staged since the last build
        {%- endif %}
    {%- endif %}
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
        avg(latency_ms) filter (where kind = 'message') as avg_latency_ms,
        max(staged_at) as staged_at
    from beacons
    group by grouping sets ((widget_id, day), (widget_id, week_start), (widget_id, month_start))
)

select
    grouped.grain,
    grouped.period_start,
    grouped.widget_id,
    grouped.project_id,
    grouped.end_user_id,
    cast(grouped.impressions as bigint) as impressions,
    cast(grouped.opens as bigint) as opens,
    cast(grouped.messages as bigint) as messages,
    cast(grouped.tokens as bigint) as tokens,
    grouped.sessions,
    grouped.visitors,
    grouped.customers,
    grouped.avg_latency_ms,
    grouped.staged_at
from grouped
{%- if is_incremental() %}
semi join touched
    on grouped.grain = touched.grain
    and grouped.period_start = touched.period_start
    and grouped.widget_id = touched.widget_id
{%- endif %}
