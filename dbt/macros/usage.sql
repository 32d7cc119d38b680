{#- Helpers for the incremental usage models (stg_usage_beacons -> int_usage_by_period). -#}

{#- When this dbt invocation started, as a UTC timestamptz literal: the `staged_at` of the rows
    it adds. -#}
{% macro build_started_at() -%}
    timestamptz '{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}+00'
{%- endmacro %}

{#- On an incremental run, the newest `staged_at` of the beacons `this` model has already
    counted, as a literal ('YYYY-MM-DD HH:MM:SS.ffffff', UTC) so that DuckDB skips the row
    groups of older beacons; none on a full build or when no counted beacon has one (rows
    staged before the column existed). -#}
{% macro staged_watermark() -%}
    {%- if not (execute and is_incremental()) -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set query -%}
        select strftime(timezone('UTC', max(staged_at)), '%Y-%m-%d %H:%M:%S.%f') from {{ this }}
    {%- endset -%}
    {{- return(run_query(query).rows[0][0]) -}}
{%- endmacro %}

{#- The condition that picks the beacons staged since `watermark` (see staged_watermark). -#}
{% macro staged_since(watermark) -%}
    {%- if watermark -%}
        staged_at > timestamptz '{{ watermark }}+00'
    {%- else -%}
        staged_at is not null
    {%- endif -%}
{%- endmacro %}
