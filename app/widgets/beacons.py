"""The hot path of usage beacons: reading a batch, and handing it to Redis in one round trip.

Beacons are the widget's highest-volume traffic (every impression of every page that embeds
it), so this path avoids per-event pydantic work and per-request network round trips:

* ``read_batch`` validates the body with plain checks that accept exactly what ``BeaconBatch``
  accepts in the forms ``embed.js`` sends; anything else (snake_case keys, padded strings, a
  numeric timestamp, an error) goes through ``BeaconBatch`` itself, so answers and error
  details are the model's.
* ``BeaconGate`` runs the rate limits and the ``XADD``s of a batch in one Lua script, and the
  batches of every request waiting at the same moment in one ``EVALSHA``: a refused batch is
  not published, an accepted one is in the stream when its request is answered.
"""

import asyncio
import re
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

import orjson
import redis.asyncio as aioredis
from fastapi.exceptions import RequestValidationError
from limits import parse_many
from pydantic import ValidationError

from app.core.errors import BadRequest, PayloadTooLarge, ValidationFailed
from app.core.usage import USAGE_KINDS
from app.widgets.schemas import MAX_BEACONS, BeaconBatch

# --- reading a batch ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BeaconEvent:
    """One validated event of a batch; ``client_ts`` is the browser's clock in UTC (ISO 8601)."""

    event_id: str
    kind: str
    count: int
    latency_ms: int | None
    client_ts: str


_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,2000}")
# RFC 3339 with a zone, as ``Date.prototype.toISOString`` writes it (and offsets): a strict
# subset of what pydantic parses, so the fast path never accepts what the model would refuse.
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)
_EVENT_FIELDS = frozenset({"eventId", "kind", "count", "occurredAt", "latencyMs"})
_BATCH_FIELDS = frozenset({"token", "events"})
_KINDS = frozenset(USAGE_KINDS)
_MAX_COUNT = 1_000_000
_MAX_LATENCY = 2_147_483_647


def read_batch(raw: bytes) -> tuple[str | None, list[BeaconEvent]]:
    """The body's token (None when absent) and events; 400 ``malformed_json``, 413
    ``too_many_events`` (more than ``MAX_BEACONS``), 422 otherwise."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("Request body is not valid JSON", code="malformed_json") from exc
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object {token, events}", code="validation_error")
    events = data.get("events")
    if isinstance(events, list) and len(events) > MAX_BEACONS:
        raise PayloadTooLarge(
            f"At most {MAX_BEACONS} events per request", code="too_many_events", details={"max": MAX_BEACONS}
        )
    fast = _read_plain(data)
    return fast if fast is not None else _read_with_model(data)


def _read_plain(data: dict[str, Any]) -> tuple[str | None, list[BeaconEvent]] | None:
    """The batch when it is in the plain form; None to let the model decide."""
    if not data.keys() <= _BATCH_FIELDS:
        return None
    token = data.get("token")
    if token is not None and not (type(token) is str and _TOKEN.fullmatch(token)):
        return None
    events = data.get("events")
    if type(events) is not list or not events:
        return None
    read: list[BeaconEvent] = []
    for event in events:
        if type(event) is not dict or not event.keys() <= _EVENT_FIELDS:
            return None
        event_id, kind = event.get("eventId"), event.get("kind")
        count, latency = event.get("count", 1), event.get("latencyMs")
        if not (
            type(event_id) is str
            and _EVENT_ID.fullmatch(event_id)
            and type(kind) is str
            and kind in _KINDS
            and type(count) is int
            and (0 <= count <= _MAX_COUNT if kind == "tokens" else count == 1)
            and (latency is None or (type(latency) is int and 0 <= latency <= _MAX_LATENCY))
        ):
            return None
        client_ts = _utc_timestamp(event.get("occurredAt"))
        if client_ts is None:
            return None
        read.append(BeaconEvent(event_id, kind, count, latency, client_ts))
    return token, read


def _utc_timestamp(value: Any) -> str | None:
    if type(value) is not str or not _TIMESTAMP.fullmatch(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
        if len(value) == 20:  # whole seconds in UTC ("...Z"), a valid date: already canonical
            return value
        return _iso_utc(moment)
    except (ValueError, OverflowError):
        return None


def _iso_utc(moment: datetime) -> str:
    # The form pydantic writes (and orjson with OPT_UTC_Z): microseconds only when not zero.
    text: str = orjson.dumps(moment.astimezone(UTC), option=orjson.OPT_UTC_Z).decode()
    return text[1:-1]


def _read_with_model(data: dict[str, Any]) -> tuple[str | None, list[BeaconEvent]]:
    try:
        batch = BeaconBatch.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc
    return batch.token or None, [
        BeaconEvent(e.event_id, e.kind, e.count, e.latency_ms, _iso_utc(e.occurred_at)) for e in batch.events
    ]


def stream_entries(
    common: dict[str, str | None], events: Sequence[BeaconEvent], received_at: datetime
) -> list[str]:
    """The events as entries of the usage stream: ``UsageBeacon`` as JSON (``common``: the
    widget's and the visitor's ids, in ``UsageBeacon``'s field names)."""
    stamp = _iso_utc(received_at)
    return [
        orjson.dumps(
            {
                "event_id": event.event_id,
                **common,
                "kind": event.kind,
                "count": event.count,
                "latency_ms": event.latency_ms,
                "client_ts": event.client_ts,
                "received_at": stamp,
            }
        ).decode()
        for event in events
    ]


# --- rate limits and the stream in one round trip -------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """At most ``amount`` batches per ``window_ms`` on ``key`` (a moving window)."""

    key: str
    amount: int
    window_ms: int


@lru_cache(maxsize=64)
def parse_rules(text: str) -> tuple[tuple[int, int], ...]:
    """``limits`` syntax (``6000/minute;100/second``) as (amount, window in ms) pairs."""
    return tuple((item.amount, item.get_expiry() * 1000) for item in parse_many(text))


@dataclass(frozen=True, slots=True)
class Refused:
    """The rule (by position) that refused a batch, and when to retry, in whole seconds."""

    rule: int
    retry_after: int


# Each request's rules are checked (``limits``' moving window: a list of hit times per key,
# newest first, trimmed to the limit); if any is exhausted nothing is recorded nor published,
# otherwise every rule records the hit and the entries are appended. Requests are taken in order.
# KEYS: the stream. ARGV: now (ms), then a JSON array of the requests, each
# {"rules": [[key, amount, window ms], ...], "entries": [entry, ...]}. Returns "rule,retry" per
# request, comma-separated: rule 0 when published, else the 1-based rule that refused, and the
# delay (ms) before it would accept. One argument and one string back rather than hundreds of
# each: redis-py packs and parses every one of them in Python. The rule keys are not declared in
# KEYS, which a standalone Redis allows (a cluster would not: the keys span slots anyway).
_GATE_SCRIPT = """
local now_text = ARGV[1]
local now = tonumber(now_text)
local stream = KEYS[1]
local out = {}
for _, request in ipairs(cjson.decode(ARGV[2])) do
  local rules = request.rules
  local refused, retry = 0, 0
  for r, rule in ipairs(rules) do
    local oldest = redis.call('LINDEX', rule[1], rule[2] - 1)
    if oldest and tonumber(oldest) >= now - rule[3] then
      refused, retry = r, tonumber(oldest) + rule[3] - now
      break
    end
  end
  if refused == 0 then
    for _, rule in ipairs(rules) do
      redis.call('LPUSH', rule[1], now_text)
      redis.call('LTRIM', rule[1], 0, rule[2] - 1)
      redis.call('PEXPIRE', rule[1], rule[3])
    end
    for _, entry in ipairs(request.entries) do
      redis.call('XADD', stream, '*', 'b', entry)
    end
  end
  out[#out + 1] = refused .. ',' .. retry
end
return table.concat(out, ',')
"""
# A script call holds Redis: past this many entries, waiting requests go in the next call.
_MAX_ENTRIES_PER_CALL: Final = 2_000


@dataclass(slots=True)
class _Waiting:
    request: bytes  # the JSON document the script reads
    entries: int
    answer: "asyncio.Future[Refused | None]"


class BeaconGate:
    """Rate limits and publication of beacon batches on one Redis client.

    Requests that arrive while a script call is in flight wait for the next one, which takes
    them all (up to ``_MAX_ENTRIES_PER_CALL`` entries): under load, one round trip serves many
    requests; alone, a request waits for no one."""

    def __init__(self, client: aioredis.Redis, stream: str) -> None:
        self.client = client
        self._stream = stream
        self._script = client.register_script(_GATE_SCRIPT)
        self._waiting: list[_Waiting] = []
        self._sender: asyncio.Task[None] | None = None

    async def publish(self, rules: Sequence[Rule], entries: Sequence[str]) -> Refused | None:
        """Check ``rules`` and, unless one refuses (returned), append ``entries`` (JSON texts)
        to the stream."""
        request = orjson.dumps(
            {"rules": [(rule.key, rule.amount, rule.window_ms) for rule in rules], "entries": entries}
        )
        answer: asyncio.Future[Refused | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(request, len(entries), answer))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_waiting())
        return await answer

    async def _send_waiting(self) -> None:
        taken: list[_Waiting] = []
        try:
            while self._waiting:
                taken = self._take()
                try:
                    results = await self._run(taken)
                except Exception as exc:
                    _fail(taken, exc)
                    continue
                for i, waiting in enumerate(taken):
                    rule, retry_ms = results[2 * i], results[2 * i + 1]
                    if not waiting.answer.done():
                        waiting.answer.set_result(Refused(rule - 1, retry_ms // 1000 + 1) if rule else None)
        except BaseException:
            # Cancelled (shutdown): nobody may be left waiting for an answer that never comes.
            waiting_now, self._waiting = [*taken, *self._waiting], []
            _fail(waiting_now, ConnectionError("the beacon gate stopped"))
            raise
        finally:
            self._sender = None

    def _take(self) -> list[_Waiting]:
        entries = 0
        for taken, waiting in enumerate(self._waiting):
            entries += waiting.entries
            if entries > _MAX_ENTRIES_PER_CALL and taken:
                batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
                return batch
        batch, self._waiting = self._waiting, []
        return batch

    async def _run(self, taken: list[_Waiting]) -> list[int]:
        requests = b"[" + b",".join(waiting.request for waiting in taken) + b"]"
        results = await self._script(keys=[self._stream], args=[_now_ms(), requests])
        return [int(value) for value in results.split(b",")]

    async def close(self) -> None:
        if self._sender is not None:
            with suppress(Exception):
                await self._sender
        await self.client.aclose()


def _fail(taken: list[_Waiting], exc: BaseException) -> None:
    for waiting in taken:
        if not waiting.answer.done():
            waiting.answer.set_exception(exc)


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- the process's gate ---------------------------------------------------------------------

_gate: tuple[str | None, str, BeaconGate] | None = None


def beacon_gate(redis_url: str | None, stream: str) -> BeaconGate | None:
    """The process's gate (None without Redis: beacons go to the outbox). Its client is its own,
    separate from the cache's, so a burst of beacons never queues behind cache traffic."""
    global _gate
    if _gate is not None and _gate[0] == redis_url and _gate[1] == stream:
        return _gate[2]
    if redis_url is None:
        return None
    _gate = (redis_url, stream, BeaconGate(aioredis.Redis.from_url(redis_url), stream))
    return _gate[2]


async def close_beacon_gate() -> None:
    global _gate
    if _gate is not None:
        gate, _gate = _gate[2], None
        await gate.close()
