-- Projects with the latest state of their listing. A project has at most one listing (it is
-- re-opened, not replaced, when republished); the latest listing event gives its status and
-- price. Names come from project.created: project.updated says which fields changed, not
-- their values.
with projects as (
    select * from {{ ref('stg_project_created') }}
),

listing_events as (
    {% for event in ['published', 'activated', 'held', 'delisted'] -%}
    select listing_id, project_id, builder_id, status, price_minor, currency, category, occurred_at, event_id
    from {{ ref('stg_listing_' ~ event) }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

latest_listing as (
    select *
    from listing_events
    qualify row_number() over (partition by project_id order by occurred_at desc, event_id desc) = 1
),

deleted as (
    select project_id, min(deleted_at) as deleted_at
    from {{ ref('stg_project_deleted') }}
    group by project_id
)

select
    projects.project_id,
    projects.builder_id,
    projects.name,
    projects.llm,
    projects.created_at,
    latest_listing.listing_id,
    latest_listing.price_minor,
    latest_listing.currency,
    latest_listing.status as listing_status,
    latest_listing.category,
    deleted.deleted_at
from projects
left join latest_listing
    on projects.project_id = latest_listing.project_id
left join deleted
    on projects.project_id = deleted.project_id
