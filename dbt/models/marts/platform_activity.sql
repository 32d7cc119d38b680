-- Platform KPIs per day, ISO week and month for the admins' dashboard. Listing views are
-- `listing.viewed` events (one per viewer, listing and UTC day); the view-to-purchase
-- conversion is the period's completed purchases per view, NULL without views.
{% set grains = ['day', 'week', 'month'] %}

with users as (
    select * from {{ ref('int_users') }}
),

purchases as (
    select * from {{ ref('int_purchases') }}
),

activity as (
    select * from {{ ref('int_user_activity') }}
),

views as (
    select * from {{ ref('stg_listing_viewed') }}
),

{% for grain in grains %}
{{ grain }}_metrics as (
    select '{{ grain }}' as grain, {{ period_start(grain, 'created_day') }} as period_start,
        'signups' as metric, count(*) as value
    from users group by all
    union all
    select '{{ grain }}', {{ period_start(grain, 'created_day') }}, 'builder_signups', count(*)
    from users where signed_up_as_builder group by all
    union all
    select '{{ grain }}', {{ period_start(grain, 'created_day') }}, 'end_user_signups', count(*)
    from users where signed_up_as_end_user group by all
    union all
    select '{{ grain }}', {{ period_start(grain, 'completed_day') }}, 'purchases', count(*)
    from purchases group by all
    union all
    select '{{ grain }}', {{ period_start(grain, 'refunded_day') }}, 'refunds', count(*)
    from purchases where is_refunded group by all
    union all
    select '{{ grain }}', {{ period_start(grain, 'activity_day') }}, 'active_builders', count(distinct user_id)
    from activity where persona = 'builder' group by all
    union all
    select '{{ grain }}', {{ period_start(grain, 'activity_day') }}, 'active_end_users', count(distinct user_id)
    from activity where persona = 'end_user' group by all
    union all
    select '{{ grain }}', {{ period_start(grain, 'view_day') }}, 'listing_views', count(*)
    from views group by all
),
{% endfor %}

metrics as (
    {% for grain in grains -%}
    select * from {{ grain }}_metrics
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

periods as (
    select
        grain,
        period_start,
        coalesce(sum(value) filter (where metric = 'signups'), 0) as signups,
        coalesce(sum(value) filter (where metric = 'builder_signups'), 0) as builder_signups,
        coalesce(sum(value) filter (where metric = 'end_user_signups'), 0) as end_user_signups,
        coalesce(sum(value) filter (where metric = 'purchases'), 0) as purchases,
        coalesce(sum(value) filter (where metric = 'refunds'), 0) as refunds,
        coalesce(sum(value) filter (where metric = 'active_builders'), 0) as active_builders,
        coalesce(sum(value) filter (where metric = 'active_end_users'), 0) as active_end_users,
        coalesce(sum(value) filter (where metric = 'listing_views'), 0) as listing_views
    from metrics
    group by all
)

select
    grain,
    period_start,
    cast(signups as bigint) as signups,
    cast(builder_signups as bigint) as builder_signups,
    cast(end_user_signups as bigint) as end_user_signups,
    cast(purchases as bigint) as purchases,
    cast(refunds as bigint) as refunds,
    cast(active_builders as bigint) as active_builders,
    cast(active_end_users as bigint) as active_end_users,
    cast(listing_views as bigint) as listing_views,
    case when listing_views > 0 then cast(purchases as double) / listing_views end as conversion_rate
from periods
