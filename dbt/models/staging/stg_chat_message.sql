-- `chat.message`: one assistant answer of a builder-studio or widget chat, with what it cost
-- to produce. Recorded by the chat engine when the answer is stored (docs/events.md).
with landed as ({{ landed_events('chat.message') }})

select
    event_id,
    {{ payload_text('messageId') }} as message_id,
    {{ payload_text('chatId') }} as chat_id,
    {{ payload_text('projectId') }} as project_id,
    {{ payload_text('channel') }} as channel,
    {{ payload_text('widgetId') }} as widget_id,
    {{ payload_text('visitorId') }} as visitor_id,
    {{ payload_text('userId') }} as user_id,
    {{ payload_text('provider') }} as provider,
    {{ payload_text('model') }} as model,
    {{ payload_bigint('inputTokens') }} as input_tokens,
    {{ payload_bigint('outputTokens') }} as output_tokens,
    {{ payload_bigint('latencyMs') }} as latency_ms,
    {{ payload_bigint('firstTokenMs') }} as first_token_ms,
    {{ payload_bigint('toolCalls') }} as tool_calls,
    -- A decimal string (or NULL when no price is configured for the model): DECIMAL, never a
    -- float, so sums are exact; 12 places hold a one-token answer's cost at any list price.
    {{ payload_usd('costUsd') }} as cost_usd,
    occurred_at as answered_at,
    {{ utc_day('occurred_at') }} as answered_day,
    landed_at
from landed
