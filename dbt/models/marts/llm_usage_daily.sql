-- LLM usage per UTC day, project, channel, provider and model: answers, tokens, cost, tool
-- calls and timings. Additive columns sum over days, projects and models; conversations,
-- averages and percentiles do not (a conversation can span days or models): the API reads
-- those over a range from fct_chat_messages.
select
    day,
    project_id,
    any_value(builder_id) as builder_id,
    channel,
    provider,
    model,
    count(*) as answers,
    count(distinct chat_id) as conversations,
    cast(sum(input_tokens) as bigint) as input_tokens,
    cast(sum(output_tokens) as bigint) as output_tokens,
    -- The priced answers' costs; answers without a price add nothing and are counted apart,
    -- so a partly priced day reads as "at least this much", never as NULL.
    cast(coalesce(sum(cost_usd), 0) as decimal(38, 12)) as cost_usd,
    count(*) filter (where cost_usd is null) as unpriced_answers,
    cast(sum(tool_calls) as bigint) as tool_calls,
    avg(latency_ms) as avg_latency_ms,
    quantile_cont(latency_ms, 0.95) as p95_latency_ms,
    avg(first_token_ms) as avg_first_token_ms,
    quantile_cont(first_token_ms, 0.95) as p95_first_token_ms
from {{ ref('fct_chat_messages') }}
group by day, project_id, channel, provider, model
