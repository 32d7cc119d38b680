{#- Rows where a boolean SQL expression is false fail the test: money identities
    (`gross_minor = processor_fee_minor + platform_fee_minor + builder_share_minor`), signs.
    Written here because dbt packages (dbt_utils) cannot be installed offline. -#}
{% test expression_is_true(model, expression, column_name=none, where=none) %}
select *
from {{ model }}
where not ({{ expression }})
{%- if where %} and ({{ where }}){% endif %}
{% endtest %}
