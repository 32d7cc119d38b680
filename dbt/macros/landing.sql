{#- Reading the landing Parquet (docs/data-platform.md, "Landing"). -#}

{% macro landing_root() -%}
    {{- env_var('WAREHOUSE_DIR', '../warehouse').rstrip('/') -}}
{%- endmacro %}

{% macro landing_glob(stream) -%}
    {{- landing_root() ~ '/landing/' ~ stream ~ '/*/*.parquet' -}}
{%- endmacro %}

{#- The contract's column types, used for the empty relation of a stream with no file yet. -#}
{% macro landing_columns(stream) -%}
    {%- set columns = {
        'events': [
            ('event_id', 'varchar'), ('type', 'varchar'), ('schema_version', 'smallint'),
            ('occurred_at', 'timestamptz'), ('actor_id', 'varchar'), ('subject_id', 'varchar'),
            ('payload', 'varchar'), ('landed_at', 'timestamptz'), ('dt', 'date'),
        ],
        'usage': [
            ('event_id', 'varchar'), ('widget_id', 'varchar'), ('project_id', 'varchar'),
            ('end_user_id', 'varchar'), ('visitor_id', 'varchar'), ('session_id', 'varchar'),
            ('customer_id', 'varchar'), ('kind', 'varchar'), ('count', 'bigint'),
            ('latency_ms', 'integer'), ('client_ts', 'timestamptz'), ('received_at', 'timestamptz'),
            ('landed_at', 'timestamptz'), ('dt', 'date'),
        ],
    } -%}
    {{- return(columns[stream]) -}}
{%- endmacro %}

{% macro landing_has_files(stream) -%}
    {#- Only known when the model runs; at parse time assume files, the SQL is not executed. -#}
    {%- if not execute -%}
        {{- return(true) -}}
    {%- endif -%}
    {%- set result = run_query("select count(*) from glob('" ~ landing_glob(stream) ~ "')") -%}
    {{- return(result.columns[0].values()[0] > 0) -}}
{%- endmacro %}

{#- An empty relation with the contract's columns and types. -#}
{% macro landing_empty(stream) -%}
    (select
    {%- for name, type in landing_columns(stream) %}
        cast(null as {{ type }}) as {{ adapter.quote(name) if name == 'count' else name }}{{ ',' if not loop.last }}
    {%- endfor %}
    where false)
{%- endmacro %}

{#- The landing partitions (dt values, 'YYYY-MM-DD') of a stream on or after `since`. -#}
{% macro landing_partitions_since(stream, since) -%}
    {%- set query -%}
        select distinct regexp_extract(file, '/dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/', 1) as dt
        from glob('{{ landing_glob(stream) }}')
        where regexp_extract(file, '/dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/', 1) >= '{{ since }}'
        order by dt
    {%- endset -%}
    {{- return(run_query(query).columns[0].values() | list) -}}
{%- endmacro %}

{#- A FROM-able relation over one landing stream: the dbt source (so lineage and docs show it),
    or, with `since`, only the `dt=` partitions from that date on. DuckDB reads the first file
    of a glob to learn the schema, so filtering `dt` after a glob over every partition would
    still open the oldest file: the new partitions are listed explicitly instead.
    A stream (or a range) with no file yet reads as an empty relation with the contract's
    types, so a build on a fresh warehouse succeeds and yields empty marts. -#}
{% macro landing_stream(stream, since=none) -%}
    {%- set relation = source('landing', stream) -%}
    {%- if not execute -%}
        (select * from {{ relation }})
    {%- elif since is none -%}
        {%- if landing_has_files(stream) -%}
            (select * from {{ relation }})
        {%- else -%}
            {{ landing_empty(stream) }}
        {%- endif -%}
    {%- else -%}
        {%- set partitions = landing_partitions_since(stream, since) -%}
        {%- if partitions -%}
            (select * from read_parquet([
                {%- for dt in partitions %}
                '{{ landing_root() }}/landing/{{ stream }}/dt={{ dt }}/*.parquet'{{ ',' if not loop.last }}
                {%- endfor %}
            ], hive_partitioning = true, hive_types = {'dt': 'DATE'}))
        {%- else -%}
            {{ landing_empty(stream) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- On an incremental run, the model's watermark minus the lookback, as literals:
    {'day': 'YYYY-MM-DD', 'at': 'YYYY-MM-DD HH:MM:SS.ffffff'} (UTC), or none on a full build or
    while the model is still empty. Literals rather than a subquery, so that DuckDB can skip
    data by them. -#}
{% macro landing_watermark() -%}
    {%- if not (execute and is_incremental()) -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set lookback = var('landing_lookback_hours') | int -%}
    {%- set query -%}
        select
            strftime(cast(timezone('UTC', max(landed_at) - interval ({{ lookback }}) hour) as date), '%Y-%m-%d'),
            strftime(timezone('UTC', max(landed_at) - interval ({{ lookback }}) hour), '%Y-%m-%d %H:%M:%S.%f')
        from {{ this }}
    {%- endset -%}
    {%- set row = run_query(query).rows[0] -%}
    {%- if row[0] is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {{- return({'day': row[0], 'at': row[1]}) -}}
{%- endmacro %}

{#- The rows of a landing stream this run must read: every file on a full build; on an
    incremental one, only partitions landed on or after the watermark's day, and rows landed
    since the watermark (minus the lookback). `dt` is the landing date, so every file landed
    since the watermark is in one of those partitions. Rows read twice are dropped by the merge
    on event_id. -#}
{% macro landing_rows(stream) -%}
    {%- set watermark = landing_watermark() -%}
    select *
    from {{ landing_stream(stream, since=watermark['day'] if watermark else none) }} as landed
    where true
    {%- if watermark %}
        and landed_at >= timestamptz '{{ watermark['at'] }}+00'
    {%- endif %}
{%- endmacro %}

{#- For models reading a staged table rather than files: rows landed since the watermark. -#}
{% macro landed_since_watermark() -%}
    {%- set watermark = landing_watermark() -%}
    {%- if watermark %}
        and landed_at >= timestamptz '{{ watermark['at'] }}+00'
    {%- endif %}
{%- endmacro %}
