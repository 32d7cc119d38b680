-- A project's usage per day, ISO week and month: what its widgets reported (beacons, the
-- client's analytics) beside the answers its LLM gave in the builder studio and in widgets
-- (`chat.message`, the server's billing truth). The two sides count the same widget chats from
-- two ends, so no column adds one to the other: `widget_messages` (beacons) and
-- `widget_answers` (server) are alternatives, never a sum.
with widgets as (
    select
        grain,
        period_start,
        project_id,
        count(*) as widgets,
        sum(impressions) as widget_impressions,
        sum(opens) as widget_opens,
        sum(messages) as widget_messages,
        sum(tokens) as widget_tokens
    from {{ ref('usage_by_period') }}
    group by grain, period_start, project_id
),

answers as (
    select
        project_id,
        chat_id,
        channel,
        input_tokens,
        output_tokens,
        cost_usd,
        day,
        {{ period_start('week', 'day') }} as week_start,
        {{ period_start('month', 'day') }} as month_start
    from {{ ref('fct_chat_messages') }}
),

chats as (
    select
        case
            when grouping(day) = 0 then 'day'
            when grouping(week_start) = 0 then 'week'
            else 'month'
        end as grain,
        coalesce(day, week_start, month_start) as period_start,
        project_id,
        count(*) filter (where channel = 'studio') as studio_answers,
        count(*) filter (where channel = 'widget') as widget_answers,
        count(distinct chat_id) filter (where channel = 'studio') as studio_conversations,
        count(distinct chat_id) filter (where channel = 'widget') as widget_conversations,
        sum(input_tokens) as llm_input_tokens,
        sum(output_tokens) as llm_output_tokens,
        coalesce(sum(cost_usd), 0) as llm_cost_usd,
        count(*) filter (where cost_usd is null) as llm_unpriced_answers
    from answers
    group by grouping sets ((project_id, day), (project_id, week_start), (project_id, month_start))
),

periods as (
    select
        coalesce(widgets.grain, chats.grain) as grain,
        coalesce(widgets.period_start, chats.period_start) as period_start,
        coalesce(widgets.project_id, chats.project_id) as project_id,
        widgets.widgets,
        widgets.widget_impressions,
        widgets.widget_opens,
        widgets.widget_messages,
        widgets.widget_tokens,
        chats.studio_answers,
        chats.widget_answers,
        chats.studio_conversations,
        chats.widget_conversations,
        chats.llm_input_tokens,
        chats.llm_output_tokens,
        chats.llm_cost_usd,
        chats.llm_unpriced_answers
    from widgets
    full outer join chats
        on widgets.grain = chats.grain
        and widgets.period_start = chats.period_start
        and widgets.project_id = chats.project_id
)

select
    periods.grain,
    periods.period_start,
    periods.project_id,
    projects.builder_id,
    cast(coalesce(periods.widgets, 0) as bigint) as widgets,
    cast(coalesce(periods.widget_impressions, 0) as bigint) as widget_impressions,
    cast(coalesce(periods.widget_opens, 0) as bigint) as widget_opens,
    cast(coalesce(periods.widget_messages, 0) as bigint) as widget_messages,
    cast(coalesce(periods.widget_tokens, 0) as bigint) as widget_tokens,
    cast(coalesce(periods.studio_answers, 0) as bigint) as studio_answers,
    cast(coalesce(periods.widget_answers, 0) as bigint) as widget_answers,
    cast(coalesce(periods.studio_conversations, 0) as bigint) as studio_conversations,
    cast(coalesce(periods.widget_conversations, 0) as bigint) as widget_conversations,
    cast(coalesce(periods.llm_input_tokens, 0) as bigint) as llm_input_tokens,
    cast(coalesce(periods.llm_output_tokens, 0) as bigint) as llm_output_tokens,
    cast(coalesce(periods.llm_cost_usd, 0) as decimal(38, 12)) as llm_cost_usd,
    cast(coalesce(periods.llm_unpriced_answers, 0) as bigint) as llm_unpriced_answers
from periods
left join {{ ref('int_projects') }} as projects
    on periods.project_id = projects.project_id
