{#- Models land in the schema their folder names (`staging`, `intermediate`, `marts`) exactly,
    not dbt's default `<target schema>_<custom>`: the API and the publish step read `marts.*`. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
