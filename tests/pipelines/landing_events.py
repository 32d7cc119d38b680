"""Landing files as the worker writes them (docs/data-platform.md, "Landing"), made with polars."""

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from app.core.warehouse_layout import WarehouseLayout
from app.worker.landing import SCHEMAS


def write_part(
    layout: WarehouseLayout,
    stream: str,
    rows: list[dict[str, object]],
    *,
    landed_at: datetime,
    age_s: float = 0,
) -> Path:
    """One ``part-*.parquet`` in the ``dt=`` partition of ``landed_at``; ``age_s`` back-dates its mtime."""
    schema = SCHEMAS[stream]
    frame = pl.DataFrame([{**row, "landed_at": landed_at} for row in rows], schema=schema)
    folder = layout.landing_stream(stream) / f"dt={landed_at.date().isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{landed_at.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex}.parquet"
    frame.write_parquet(path)
    if age_s:
        stamp = path.stat().st_mtime - age_s
        os.utime(path, (stamp, stamp))
    return path


def domain_event(
    kind: str, payload: dict[str, object], *, at: datetime, actor: str | None = None, subject: str
) -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "schema_version": 1,
        "occurred_at": at,
        "actor_id": actor,
        "subject_id": subject,
        "payload": json.dumps(payload),
    }


def usage_beacon(
    *, widget_id: str, project_id: str, end_user_id: str, kind: str, count: int, at: datetime
) -> dict[str, object]:
    return {
        "event_id": uuid.uuid4().hex,
        "widget_id": widget_id,
        "project_id": project_id,
        "end_user_id": end_user_id,
        "visitor_id": "visitor-1",
        "session_id": "session-1",
        "customer_id": None,
        "kind": kind,
        "count": count,
        "latency_ms": 120 if kind == "message" else None,
        "client_ts": at,
        "received_at": at,
        "landed_at": at,
    }


class Marketplace:
    """A small, consistent marketplace history: a builder's project sold once, used by a widget."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC).replace(microsecond=0)
        self.builder_id = str(uuid.uuid4())
        self.buyer_id = str(uuid.uuid4())
        self.project_id = str(uuid.uuid4())
        self.listing_id = str(uuid.uuid4())
        self.widget_id = str(uuid.uuid4())

    def sign_ups_and_sale(self) -> list[dict[str, object]]:
        at = self.now - timedelta(hours=1)
        purchase_id = str(uuid.uuid4())
        purchase = {
            "purchaseId": purchase_id,
            "listingId": self.listing_id,
            "projectId": self.project_id,
            "builderId": self.builder_id,
            "buyerId": self.buyer_id,
            "amountMinor": 1000,
            "currency": "usd",
            "provider": "local",
        }
        return [
            domain_event(
                "user.created",
                {"persona": "builder", "personas": ["builder"], "plan": "free", "signup": True},
                at=at,
                actor=self.builder_id,
                subject=self.builder_id,
            ),
            domain_event(
                "user.created",
                {"persona": "end_user", "personas": ["end_user"], "plan": "free", "signup": True},
                at=at,
                actor=self.buyer_id,
                subject=self.buyer_id,
            ),
            domain_event(
                "project.created",
                {"ownerId": self.builder_id, "name": "Helpdesk bot", "llm": None, "status": "draft"},
                at=at,
                actor=self.builder_id,
                subject=self.project_id,
            ),
            domain_event(
                "purchase.created",
                {**purchase, "status": "pending"},
                at=at,
                actor=self.buyer_id,
                subject=purchase_id,
            ),
            domain_event(
                "purchase.completed",
                {
                    **purchase,
                    "status": "completed",
                    "paymentId": str(uuid.uuid4()),
                    "grossMinor": 1000,
                    "processorFeeMinor": 59,
                    "platformFeeMinor": 200,
                    "builderShareMinor": 741,
                    "platformFeeBps": 2000,
                    "invoiceId": str(uuid.uuid4()),
                },
                at=at,
                actor=self.buyer_id,
                subject=purchase_id,
            ),
        ]

    def studio_answer(
        self, *, input_tokens: int, output_tokens: int, cost_usd: str | None
    ) -> dict[str, object]:
        """A ``chat.message``: the builder testing the project in the builder studio."""
        chat_id = str(uuid.uuid4())
        return domain_event(
            "chat.message",
            {
                "projectId": self.project_id,
                "chatId": chat_id,
                "messageId": str(uuid.uuid4()),
                "channel": "studio",
                "widgetId": None,
                "visitorId": None,
                "userId": self.builder_id,
                "provider": "openai",
                "model": "gpt-4o-mini",
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "latencyMs": 900,
                "firstTokenMs": 250,
                "toolCalls": 0,
                "costUsd": cost_usd,
            },
            at=self.now - timedelta(minutes=30),
            actor=self.builder_id,
            subject=chat_id,
        )

    def messages(self, count: int) -> list[dict[str, object]]:
        return [
            usage_beacon(
                widget_id=self.widget_id,
                project_id=self.project_id,
                end_user_id=self.buyer_id,
                kind="message",
                count=1,
                at=self.now - timedelta(minutes=5),
            )
            for _ in range(count)
        ]
