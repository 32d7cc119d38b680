-- Top 100 per board, grain and period. Ties are broken by entity id so ranks are stable
-- between builds. Only positive values rank: a builder whose period is all refunds is not
-- "top" of anything.
{% set grains = ['day', 'week', 'month', 'all_time'] %}


with revenue as (
    select * from {{ ref('revenue_daily') }}
),

usage_days as (
    select * from {{ ref('usage_by_period') }} where grain = 'day'
),

scores as (
    {% for grain in grains %}
    select
        'builders_by_revenue' as board, '{{ grain }}' as grain, {{ period_start(grain, 'day') }} as period_start,
        currency, builder_id as entity_id, sum(net_gross_minor) as value
    from revenue group by all
    union all
    select
        'projects_by_purchases', '{{ grain }}', {{ period_start(grain, 'day') }},
        '', project_id, sum(sales) - sum(refunds)
    from revenue group by all
    union all
    select
        'projects_by_usage', '{{ grain }}', {{ period_start(grain, 'period_start') }},
        '', project_id, sum(messages)
    from usage_days where project_id is not null group by all
    union all
    select
        'widgets_by_usage', '{{ grain }}', {{ period_start(grain, 'period_start') }},
        '', widget_id, sum(messages)
    from usage_days group by all
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

ranked as (
    select
        *,
        row_number() over (
            partition by board, grain, period_start, currency
            order by value desc, entity_id
        ) as rank
    from scores
    where value > 0
)

select
    board,
    grain,
    period_start,
    currency,
    cast(rank as integer) as rank,
    entity_id,
    cast(value as bigint) as value
from ranked
where rank <= 100
