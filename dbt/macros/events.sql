{#- Helpers for the staging models over `landing/events`. -#}

{#- The rows of one event type from stg_events (already deduplicated on event_id), only those
    landed since this model's watermark on an incremental run. -#}
{% macro landed_events(event_type) -%}
    select *
    from {{ ref('stg_events') }}
    where type = '{{ event_type }}'
    {{ landed_since_watermark() }}
{%- endmacro %}

{#- A payload field as text; payloads are JSON text with camelCase keys. -#}
{% macro payload_text(key) -%}
    (payload ->> '$.{{ key }}')
{%- endmacro %}

{#- A payload amount or count: minor units stay integers (BIGINT), never floats. -#}
{% macro payload_bigint(key) -%}
    cast(payload ->> '$.{{ key }}' as bigint)
{%- endmacro %}

{% macro payload_bool(key) -%}
    cast(payload ->> '$.{{ key }}' as boolean)
{%- endmacro %}

{% macro payload_text_list(key) -%}
    from_json(payload -> '$.{{ key }}', '["VARCHAR"]')
{%- endmacro %}

{#- The UTC calendar day of a timestamptz, whatever the session's time zone. -#}
{% macro utc_day(column) -%}
    cast(timezone('UTC', {{ column }}) as date)
{%- endmacro %}

{#- First day of the ISO week (Monday) / month of a DATE; `all_time` is one period starting
    1970-01-01. -#}
{% macro period_start(grain, day_column) -%}
    {%- if grain == 'day' -%}
        {{ day_column }}
    {%- elif grain == 'all_time' -%}
        date '1970-01-01'
    {%- else -%}
        cast(date_trunc('{{ grain }}', {{ day_column }}) as date)
    {%- endif -%}
{%- endmacro %}

{#- The columns every `listing.*` payload carries (docs/events.md, Marketplace). -#}
{% macro listing_columns() -%}
    event_id,
    subject_id as listing_id,
    {{ payload_text('projectId') }} as project_id,
    {{ payload_text('builderId') }} as builder_id,
    {{ payload_text('status') }} as status,
    {{ payload_bigint('priceMinor') }} as price_minor,
    {{ payload_text('currency') }} as currency,
    {{ payload_text('category') }} as category,
    actor_id,
    occurred_at
{%- endmacro %}

{#- The columns every `purchase.*` payload carries. -#}
{% macro purchase_columns() -%}
    event_id,
    subject_id as purchase_id,
    {{ payload_text('listingId') }} as listing_id,
    {{ payload_text('projectId') }} as project_id,
    {{ payload_text('builderId') }} as builder_id,
    {{ payload_text('buyerId') }} as buyer_id,
    {{ payload_bigint('amountMinor') }} as amount_minor,
    {{ payload_text('currency') }} as currency,
    {{ payload_text('provider') }} as provider,
    {{ payload_text('status') }} as status
{%- endmacro %}

{#- The split of a sale, as frozen on `purchase.completed` and repeated on `purchase.refunded`. -#}
{% macro split_columns() -%}
    {{ payload_bigint('grossMinor') }} as gross_minor,
    {{ payload_bigint('processorFeeMinor') }} as processor_fee_minor,
    {{ payload_bigint('platformFeeMinor') }} as platform_fee_minor,
    {{ payload_bigint('builderShareMinor') }} as builder_share_minor
{%- endmacro %}

{#- The columns every `payout.*` payload carries. -#}
{% macro payout_columns() -%}
    event_id,
    subject_id as payout_id,
    {{ payload_text('builderId') }} as builder_id,
    {{ payload_bigint('amountMinor') }} as amount_minor,
    {{ payload_text('currency') }} as currency,
    {{ payload_text('provider') }} as provider,
    {{ payload_text('status') }} as status,
    actor_id as requested_by
{%- endmacro %}

{#- A payload amount in US dollars, sent as a decimal string ("0.000123") or NULL: an exact
    DECIMAL(38, 12), never a float. -#}
{% macro payload_usd(key) -%}
    cast(payload ->> '$.{{ key }}' as decimal(38, 12))
{%- endmacro %}
