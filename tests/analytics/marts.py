"""Publish a served warehouse version straight from Python, shaped like the contract in
``docs/data-platform.md`` (the marts tables and ``marts.serve_meta``), without dbt: the API's
tests need known numbers, the pipeline's end-to-end test runs the real thing.

``publish(warehouse_dir, marts)`` writes ``serve/<version>/warehouse.duckdb`` and flips
``serve/current`` (a relative symlink, replaced with ``os.replace``) like the Dagster publish
asset does. Rows are dicts; missing columns are NULL (money and counts default to 0).
"""

import os
import secrets
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from app.core.warehouse_layout import WarehouseLayout

MARTS: dict[str, dict[str, str]] = {
    "fct_revenue_splits": {
        "purchase_id": "VARCHAR",
        "listing_id": "VARCHAR",
        "project_id": "VARCHAR",
        "builder_id": "VARCHAR",
        "buyer_id": "VARCHAR",
        "currency": "VARCHAR",
        "completed_at": "TIMESTAMPTZ",
        "completed_day": "DATE",
        "gross_minor": "BIGINT",
        "processor_fee_minor": "BIGINT",
        "platform_fee_minor": "BIGINT",
        "builder_share_minor": "BIGINT",
        "platform_fee_bps": "INTEGER",
        "is_refunded": "BOOLEAN",
        "refunded_at": "TIMESTAMPTZ",
        "refunded_day": "DATE",
    },
    "fct_ledger_entries": {
        "transaction_id": "VARCHAR",
        "kind": "VARCHAR",
        "reference": "VARCHAR",
        "currency": "VARCHAR",
        "account": "VARCHAR",
        "leg": "VARCHAR",
        "amount_minor": "BIGINT",
        "builder_id": "VARCHAR",
        "project_id": "VARCHAR",
        "purchase_id": "VARCHAR",
        "posted_at": "TIMESTAMPTZ",
        "posted_day": "DATE",
    },
    "revenue_daily": {
        "day": "DATE",
        "currency": "VARCHAR",
        "project_id": "VARCHAR",
        "builder_id": "VARCHAR",
        **dict.fromkeys(
            (
                "sales",
                "gross_minor",
                "processor_fee_minor",
                "platform_fee_minor",
                "builder_share_minor",
                "refunds",
                "refunded_gross_minor",
                "refunded_platform_fee_minor",
                "refunded_builder_share_minor",
                "net_gross_minor",
                "net_builder_share_minor",
            ),
            "BIGINT",
        ),
    },
    "payouts_daily": {
        "day": "DATE",
        "currency": "VARCHAR",
        "builder_id": "VARCHAR",
        **dict.fromkeys(
            (
                "payouts_created",
                "created_minor",
                "payouts_paid",
                "paid_minor",
                "payouts_failed",
                "failed_minor",
            ),
            "BIGINT",
        ),
    },
    "platform_money_daily": {
        "day": "DATE",
        "currency": "VARCHAR",
        **dict.fromkeys(
            (
                "gmv_minor",
                "refunded_minor",
                "processor_fees_minor",
                "platform_fees_minor",
                "billing_revenue_minor",
                "fee_expense_minor",
                "net_revenue_minor",
                "payouts_paid_minor",
            ),
            "BIGINT",
        ),
    },
    "platform_activity": {
        "grain": "VARCHAR",
        "period_start": "DATE",
        **dict.fromkeys(
            (
                "signups",
                "builder_signups",
                "end_user_signups",
                "purchases",
                "refunds",
                "active_builders",
                "active_end_users",
                "listing_views",
            ),
            "BIGINT",
        ),
        "conversion_rate": "DOUBLE",
    },
    "usage_by_period": {
        "grain": "VARCHAR",
        "period_start": "DATE",
        "widget_id": "VARCHAR",
        "project_id": "VARCHAR",
        "builder_id": "VARCHAR",
        "end_user_id": "VARCHAR",
        **dict.fromkeys(
            ("impressions", "opens", "messages", "tokens", "sessions", "visitors", "customers"), "BIGINT"
        ),
        "avg_latency_ms": "DOUBLE",
    },
    "end_user_spend_daily": {
        "day": "DATE",
        "currency": "VARCHAR",
        "buyer_id": "VARCHAR",
        **dict.fromkeys(("purchases", "spend_minor", "refunds", "refunded_minor"), "BIGINT"),
    },
    "leaderboards": {
        "board": "VARCHAR",
        "grain": "VARCHAR",
        "period_start": "DATE",
        "currency": "VARCHAR",
        "rank": "INTEGER",
        "entity_id": "VARCHAR",
        "value": "BIGINT",
    },
    "dim_projects": {
        "project_id": "VARCHAR",
        "builder_id": "VARCHAR",
        "name": "VARCHAR",
        "created_at": "TIMESTAMPTZ",
        "listing_id": "VARCHAR",
        "price_minor": "BIGINT",
        "currency": "VARCHAR",
        "listing_status": "VARCHAR",
    },
    "fct_chat_messages": {
        "message_id": "VARCHAR",
        "event_id": "VARCHAR",
        "chat_id": "VARCHAR",
        "project_id": "VARCHAR",
        "builder_id": "VARCHAR",
        "channel": "VARCHAR",
        "widget_id": "VARCHAR",
        "user_id": "VARCHAR",
        "provider": "VARCHAR",
        "model": "VARCHAR",
        "input_tokens": "BIGINT",
        "output_tokens": "BIGINT",
        "cost_usd": "DECIMAL(38, 12)",
        "latency_ms": "BIGINT",
        "first_token_ms": "BIGINT",
        "tool_calls": "BIGINT",
        "answered_at": "TIMESTAMPTZ",
        "day": "DATE",
    },
    "llm_usage_daily": {
        "day": "DATE",
        "project_id": "VARCHAR",
        "builder_id": "VARCHAR",
        "channel": "VARCHAR",
        "provider": "VARCHAR",
        "model": "VARCHAR",
        **dict.fromkeys(
            ("answers", "conversations", "input_tokens", "output_tokens"),
            "BIGINT",
        ),
        "cost_usd": "DECIMAL(38, 12)",
        "unpriced_answers": "BIGINT",
        "tool_calls": "BIGINT",
        **dict.fromkeys(
            ("avg_latency_ms", "p95_latency_ms", "avg_first_token_ms", "p95_first_token_ms"), "DOUBLE"
        ),
    },
    "project_usage_by_period": {
        "grain": "VARCHAR",
        "period_start": "DATE",
        "project_id": "VARCHAR",
        "builder_id": "VARCHAR",
        **dict.fromkeys(
            (
                "widgets",
                "widget_impressions",
                "widget_opens",
                "widget_messages",
                "widget_tokens",
                "studio_answers",
                "widget_answers",
                "studio_conversations",
                "widget_conversations",
                "llm_input_tokens",
                "llm_output_tokens",
            ),
            "BIGINT",
        ),
        "llm_cost_usd": "DECIMAL(38, 12)",
        "llm_unpriced_answers": "BIGINT",
    },
}

Marts = Mapping[str, Iterable[Mapping[str, Any]]]


def new_version(at: datetime | None = None) -> str:
    at = at or datetime.now(UTC)
    return f"{at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def write_version(
    warehouse_dir: Path,
    marts: Marts | None = None,
    *,
    version: str | None = None,
    published_at: datetime | None = None,
    as_of: datetime | None = None,
    without: Iterable[str] = (),
) -> str:
    """``serve/<version>/warehouse.duckdb`` with every mart (the given rows) but those named in
    ``without`` (a version published before they existed), not yet current."""
    layout = WarehouseLayout(warehouse_dir)
    version = version or new_version(published_at)
    published_at = published_at or datetime.now(UTC)
    path = layout.served_file(version)
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA marts")
        for table, columns in MARTS.items():
            if table in without:
                continue
            con.execute(f"CREATE TABLE marts.{table} ({', '.join(f'{c} {t}' for c, t in columns.items())})")
            rows = list((marts or {}).get(table, []))
            if rows:
                unknown = {k for row in rows for k in row} - set(columns)
                assert not unknown, f"{table} has no columns {unknown}"
                values = [
                    [
                        str(row[c]) if row.get(c) is not None and t == "VARCHAR" else row.get(c, _default(t))
                        for c, t in columns.items()
                    ]
                    for row in rows
                ]
                con.executemany(f"INSERT INTO marts.{table} VALUES ({', '.join('?' * len(columns))})", values)
        con.execute(
            "CREATE TABLE marts.serve_meta (version VARCHAR NOT NULL, published_at TIMESTAMPTZ NOT NULL, "
            "as_of TIMESTAMPTZ, run_id VARCHAR)"
        )
        con.execute(
            "INSERT INTO marts.serve_meta VALUES (?, ?, ?, 'test')",
            [version, published_at, as_of or published_at - timedelta(minutes=1)],
        )
    return version


def _default(sql_type: str) -> Any:
    return 0 if sql_type in ("BIGINT", "INTEGER") else None


def point_current_at(warehouse_dir: Path, version: str) -> None:
    layout = WarehouseLayout(warehouse_dir)
    temporary = layout.serve / f".current-{secrets.token_hex(4)}"
    os.symlink(version, temporary)
    os.replace(temporary, layout.current_link)


def publish(warehouse_dir: Path, marts: Marts | None = None, **meta: Any) -> str:
    """Write a version and make it current; returns the version."""
    version = write_version(warehouse_dir, marts, **meta)
    point_current_at(warehouse_dir, version)
    return version


# --- rows shaped like dbt's ----------------------------------------------------------------------


def revenue_row(
    day: date,
    project_id: Any,
    builder_id: Any,
    *,
    sales: int,
    gross: int,
    refunds: int = 0,
    refunded_gross: int = 0,
    currency: str = "usd",
) -> dict[str, Any]:
    """A ``revenue_daily`` row with a 20% platform fee, 5% processor fee, the rest to the builder."""
    platform, processor = gross // 5, gross // 20
    refunded_platform = refunded_gross // 5
    refunded_share = refunded_gross - refunded_platform - refunded_gross // 20
    return {
        "day": day,
        "currency": currency,
        "project_id": project_id,
        "builder_id": builder_id,
        "sales": sales,
        "gross_minor": gross,
        "processor_fee_minor": processor,
        "platform_fee_minor": platform,
        "builder_share_minor": gross - platform - processor,
        "refunds": refunds,
        "refunded_gross_minor": refunded_gross,
        "refunded_platform_fee_minor": refunded_platform,
        "refunded_builder_share_minor": refunded_share,
        "net_gross_minor": gross - refunded_gross,
        "net_builder_share_minor": gross - platform - processor - refunded_share,
    }


def _week(day: date) -> date:
    return day - timedelta(days=day.weekday())


def usage_rows(days: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``usage_by_period`` rows of every grain from per-day rows (``day``, ``widget_id``,
    ``project_id``, ``builder_id``, ``end_user_id`` and counts). Week and month ``sessions`` and
    ``visitors`` are the largest day's, as if the same visitors came back every day: distinct
    counts do not add up, and the API must read them from the period's own row."""
    rows: list[dict[str, Any]] = []
    periods: dict[tuple[str, date, Any], dict[str, Any]] = {}
    for day in days:
        base = {k: v for k, v in day.items() if k != "day"}
        base.setdefault("sessions", 0)
        base.setdefault("visitors", 0)
        rows.append({"grain": "day", "period_start": day["day"], **base})
        for grain, start in (("week", _week(day["day"])), ("month", day["day"].replace(day=1))):
            key = (grain, start, day["widget_id"])
            period = periods.setdefault(
                key,
                {
                    "grain": grain,
                    "period_start": start,
                    **{k: v for k, v in base.items() if k.endswith("_id")},
                },
            )
            for metric in ("impressions", "opens", "messages", "tokens"):
                period[metric] = period.get(metric, 0) + base.get(metric, 0)
            for metric in ("sessions", "visitors"):
                period[metric] = max(period.get(metric, 0), base[metric])
    return rows + list(periods.values())


def activity_rows(days: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``platform_activity`` rows of every grain from per-day rows; ``active_*`` of a week or
    month are the largest day's (distinct users, not a sum)."""
    rows: list[dict[str, Any]] = []
    periods: dict[tuple[str, date], dict[str, Any]] = defaultdict(dict)
    for day in days:
        counts = {k: v for k, v in day.items() if k != "day"}
        rows.append({"grain": "day", "period_start": day["day"], **counts})
        for grain, start in (("week", _week(day["day"])), ("month", day["day"].replace(day=1))):
            period = periods[(grain, start)]
            period.update(grain=grain, period_start=start)
            for metric, value in counts.items():
                if metric.startswith("active_"):
                    period[metric] = max(period.get(metric, 0), value)
                elif metric != "conversion_rate":
                    period[metric] = period.get(metric, 0) + value
    return rows + list(periods.values())


def chat_rows(answers: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``fct_chat_messages`` rows (one per answer: ``day``, ``project_id``, ``builder_id``,
    ``channel``, ``provider``, ``model``, ``chat_id``, tokens, ``cost_usd`` as text or None,
    timings) and the ``llm_usage_daily`` rows dbt would make of them."""
    facts: list[dict[str, Any]] = []
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for answer in answers:
        fact = {
            "message_id": uuid.uuid4(),
            "event_id": uuid.uuid4(),
            "tool_calls": 0,
            "first_token_ms": None,
            **answer,
            "cost_usd": None if answer.get("cost_usd") is None else Decimal(answer["cost_usd"]),
        }
        facts.append(fact)
        key = tuple(fact[k] for k in ("day", "project_id", "channel", "provider", "model"))
        groups[key].append(fact)
    daily = []
    for (day, project, channel, provider, model), rows in groups.items():
        latencies = [r["latency_ms"] for r in rows]
        first_tokens = [r["first_token_ms"] for r in rows if r["first_token_ms"] is not None]
        daily.append(
            {
                "day": day,
                "project_id": project,
                "builder_id": rows[0]["builder_id"],
                "channel": channel,
                "provider": provider,
                "model": model,
                "answers": len(rows),
                "conversations": len({r["chat_id"] for r in rows}),
                "input_tokens": sum(r["input_tokens"] for r in rows),
                "output_tokens": sum(r["output_tokens"] for r in rows),
                "cost_usd": sum((r["cost_usd"] for r in rows if r["cost_usd"] is not None), Decimal(0)),
                "unpriced_answers": sum(1 for r in rows if r["cost_usd"] is None),
                "tool_calls": sum(r["tool_calls"] for r in rows),
                "avg_latency_ms": sum(latencies) / len(latencies),
                "avg_first_token_ms": sum(first_tokens) / len(first_tokens) if first_tokens else None,
            }
        )
    return {"fct_chat_messages": facts, "llm_usage_daily": daily}
