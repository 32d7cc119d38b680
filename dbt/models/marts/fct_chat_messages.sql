-- One row per assistant answer: the base of the LLM usage marts, and what the API reads for
-- latency percentiles and distinct conversations over any range (neither adds up across days).
-- An answer recorded twice (two events for one message id) counts once: the first recorded.
with answers as (
    select *
    from {{ ref('stg_chat_message') }}
    qualify row_number() over (partition by message_id order by answered_at, event_id) = 1
)

select
    answers.message_id,
    answers.event_id,
    answers.chat_id,
    answers.project_id,
    projects.builder_id,
    answers.channel,
    answers.widget_id,
    answers.user_id,
    answers.provider,
    answers.model,
    answers.input_tokens,
    answers.output_tokens,
    answers.cost_usd,
    answers.latency_ms,
    answers.first_token_ms,
    answers.tool_calls,
    answers.answered_at,
    answers.answered_day as day
from answers
left join {{ ref('int_projects') }} as projects
    on answers.project_id = projects.project_id
