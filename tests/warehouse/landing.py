"""Landing Parquet fixtures in the exact schema of docs/data-platform.md, and a small story of
a marketplace told as domain events and usage beacons.

Payloads follow docs/events.md (camelCase JSON text); ledger transactions follow its "Money"
section, so the warehouse's reconciliation can be checked against known numbers.
"""

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from app.worker.landing import SCHEMAS


def uid(name: str) -> str:
    """A stable UUID text per readable name, so tests can say `uid("builder-1")`."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bazaar-test:{name}"))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def write_landing_file(root: Path, stream: str, landed_at: datetime, rows: list[dict[str, Any]]) -> Path:
    """One landed file, as the worker writes it: `landing/<stream>/dt=<landing date>/part-*.parquet`."""
    schema = SCHEMAS[stream]
    folder = root / "landing" / stream / f"dt={landed_at.date().isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{landed_at.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.parquet"
    frame = pl.DataFrame([{**row, "landed_at": landed_at} for row in rows], schema=schema, orient="row")
    frame.write_parquet(path)
    return path


def local_split(gross_minor: int, fee_bps: int = 1000) -> tuple[int, int, int, int]:
    """The local provider's split: 2.9% + 30 processor fee, floor(gross * bps / 10000) to the
    platform, the rest to the builder."""
    processor_fee = gross_minor * 29 // 1000 + 30 if gross_minor else 0
    platform_fee = gross_minor * fee_bps // 10000
    return gross_minor, processor_fee, platform_fee, gross_minor - processor_fee - platform_fee


@dataclass
class Listing:
    listing_id: str
    project_id: str
    builder_id: str
    price_minor: int


@dataclass
class Story:
    """Domain events and beacons of one landing batch, in the order the services record them."""

    events: list[dict[str, Any]] = field(default_factory=list)
    beacons: list[dict[str, Any]] = field(default_factory=list)

    def event(
        self,
        type_: str,
        when: str,
        payload: dict[str, Any],
        actor: str | None = None,
        subject: str | None = None,
    ) -> dict[str, Any]:
        row = {
            "event_id": str(uuid.uuid4()),
            "type": type_,
            "schema_version": 1,
            "occurred_at": at(when),
            "actor_id": actor,
            "subject_id": subject,
            "payload": json.dumps(payload),
        }
        self.events.append(row)
        return row

    def reland(self, row: dict[str, Any]) -> None:
        """The same event again (a crash between rename and acknowledgement)."""
        self.events.append(dict(row))

    def user_created(self, user: str, personas: list[str], when: str, signup: bool = True) -> None:
        self.event(
            "user.created",
            when,
            {"persona": personas[0], "personas": sorted(personas), "plan": "free", "signup": signup},
            actor=uid(user) if signup else None,
            subject=uid(user),
        )

    def roles_changed(self, user: str, before: list[str], after: list[str], when: str) -> None:
        self.event(
            "user.roles_changed",
            when,
            {"from": sorted(before), "to": sorted(after)},
            actor=uid(user),
            subject=uid(user),
        )

    def login(self, user: str, persona: str, when: str) -> None:
        self.event(
            "session.login",
            when,
            {"persona": persona, "ip": "203.0.113.7"},
            actor=uid(user),
            subject=str(uuid.uuid4()),
        )

    def project_created(self, project: str, builder: str, name: str, when: str) -> None:
        self.event(
            "project.created",
            when,
            {"ownerId": uid(builder), "name": name, "llm": None, "status": "draft"},
            actor=uid(builder),
            subject=uid(project),
        )

    def listing_published(
        self, listing: str, project: str, builder: str, price_minor: int, when: str
    ) -> Listing:
        self.event(
            "listing.published",
            when,
            {
                "listingId": uid(listing),
                "projectId": uid(project),
                "builderId": uid(builder),
                "status": "active",
                "priceMinor": price_minor,
                "currency": "usd",
                "category": "customer-support",
            },
            actor=uid(builder),
            subject=uid(listing),
        )
        return Listing(uid(listing), uid(project), uid(builder), price_minor)

    def _purchase(self, purchase: str, listing: Listing, buyer: str, status: str) -> dict[str, Any]:
        return {
            "purchaseId": uid(purchase),
            "listingId": listing.listing_id,
            "projectId": listing.project_id,
            "builderId": listing.builder_id,
            "buyerId": uid(buyer),
            "amountMinor": listing.price_minor,
            "currency": "usd",
            "provider": "local",
            "status": status,
        }

    def _ledger(
        self,
        kind: str,
        reference: str,
        when: str,
        entries: list[tuple[str, str, int]],
        actor: str | None,
        **ids: str | None,
    ) -> dict[str, Any]:
        return self.event(
            "ledger.entry_posted",
            when,
            {
                "kind": kind,
                "reference": reference,
                "currency": "usd",
                "builderId": ids.get("builder_id"),
                "projectId": ids.get("project_id"),
                "purchaseId": ids.get("purchase_id"),
                "entries": [{"account": a, "leg": leg, "amountMinor": m} for a, leg, m in entries if m != 0],
            },
            actor=actor,
            subject=str(uuid.uuid4()),
        )

    def sale(self, purchase: str, listing: Listing, buyer: str, when: str) -> dict[str, dict[str, Any]]:
        """A local-provider purchase: created, settled in the ledger, completed (one commit)."""
        gross, fee, platform, share = local_split(listing.price_minor)
        self.event(
            "purchase.created",
            when,
            self._purchase(purchase, listing, buyer, "pending"),
            uid(buyer),
            uid(purchase),
        )
        settlement = self._ledger(
            "settlement",
            f"purchase:{uid(purchase)}",
            when,
            [
                ("platform:cash", "gross", gross),
                ("platform:cash", "processor_fee", -fee),
                ("platform:revenue", "platform_fee", -platform),
                (f"builder:{listing.builder_id}:payable", "builder_share", -share),
            ],
            uid(buyer),
            builder_id=listing.builder_id,
            project_id=listing.project_id,
            purchase_id=uid(purchase),
        )
        completed = self.event(
            "purchase.completed",
            when,
            {
                **self._purchase(purchase, listing, buyer, "completed"),
                "paymentId": str(uuid.uuid4()),
                "grossMinor": gross,
                "processorFeeMinor": fee,
                "platformFeeMinor": platform,
                "builderShareMinor": share,
                "platformFeeBps": 1000,
                "invoiceId": str(uuid.uuid4()),
            },
            uid(buyer),
            uid(purchase),
        )
        return {"settlement": settlement, "completed": completed}

    def refund(self, purchase: str, listing: Listing, buyer: str, admin: str, when: str) -> None:
        gross, fee, platform, share = local_split(listing.price_minor)
        self.event(
            "purchase.refunded",
            when,
            {
                **self._purchase(purchase, listing, buyer, "refunded"),
                "reason": "requested by customer",
                "grossMinor": gross,
                "processorFeeMinor": fee,
                "platformFeeMinor": platform,
                "builderShareMinor": share,
            },
            uid(admin),
            uid(purchase),
        )
        self._ledger(
            "refund",
            f"purchase:{uid(purchase)}",
            when,
            [
                ("platform:cash", "gross", -gross),
                ("platform:cash", "processor_fee", fee),
                ("platform:revenue", "platform_fee", platform),
                (f"builder:{listing.builder_id}:payable", "builder_share", share),
                ("platform:cash", "unrefunded_processor_fee", -fee),
                ("platform:fee_expense", "unrefunded_processor_fee", fee),
            ],
            uid(admin),
            builder_id=listing.builder_id,
            project_id=listing.project_id,
            purchase_id=uid(purchase),
        )

    def plan_paid(self, user: str, gross_minor: int, tax_minor: int, when: str) -> None:
        fee = gross_minor * 29 // 1000 + 30
        self._ledger(
            "plan",
            f"invoice:{uuid.uuid4()}",
            when,
            [
                ("platform:cash", "gross", gross_minor),
                ("platform:billing_revenue", "billing_revenue", -(gross_minor - tax_minor)),
                ("platform:tax_payable", "tax", -tax_minor),
                ("platform:cash", "processor_fee", -fee),
                ("platform:fee_expense", "processor_fee", fee),
            ],
            uid(user),
        )

    def payout(
        self, payout: str, builder: str, amount_minor: int, opened: str, settled: str, paid: bool
    ) -> None:
        body = {
            "payoutId": uid(payout),
            "builderId": uid(builder),
            "amountMinor": amount_minor,
            "currency": "usd",
            "provider": "local",
        }
        payable = f"builder:{uid(builder)}:payable"
        self.event("payout.created", opened, {**body, "status": "pending"}, None, uid(payout))
        self._ledger(
            "payout",
            f"payout:{uid(payout)}",
            opened,
            [(payable, "payout", amount_minor), ("platform:payouts_in_transit", "payout", -amount_minor)],
            None,
            builder_id=uid(builder),
        )
        if paid:
            self.event(
                "payout.paid",
                settled,
                {**body, "status": "paid", "providerTransferId": "tr_1", "attempts": 1},
                None,
                uid(payout),
            )
            self._ledger(
                "payout_paid",
                f"payout:{uid(payout)}",
                settled,
                [
                    ("platform:payouts_in_transit", "payout_paid", amount_minor),
                    ("platform:cash", "payout_paid", -amount_minor),
                ],
                None,
                builder_id=uid(builder),
            )
        else:
            self.event(
                "payout.failed",
                settled,
                {**body, "status": "failed", "reason": "account closed", "attempts": 1},
                None,
                uid(payout),
            )
            self._ledger(
                "payout_failed",
                f"payout:{uid(payout)}",
                settled,
                [
                    (payable, "payout_failed", -amount_minor),
                    ("platform:payouts_in_transit", "payout_failed", amount_minor),
                ],
                None,
                builder_id=uid(builder),
            )

    def chat_message(
        self,
        chat: str,
        project: str,
        when: str,
        *,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        latency_ms: int,
        first_token_ms: int | None,
        cost_usd: str | None,
        user: str | None = None,
        widget: str | None = None,
        visitor: str | None = None,
        tool_calls: int = 0,
    ) -> dict[str, Any]:
        """An assistant answer as the chat engine records it (docs/data-platform.md): channel
        `widget` when a widget's visitor chats, `studio` when a signed-in user does."""
        return self.event(
            "chat.message",
            when,
            {
                "projectId": uid(project),
                "chatId": uid(chat),
                "messageId": str(uuid.uuid4()),
                "channel": "widget" if widget else "studio",
                "widgetId": uid(widget) if widget else None,
                "visitorId": visitor,
                "userId": uid(user) if user else None,
                "provider": provider,
                "model": model,
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "latencyMs": latency_ms,
                "firstTokenMs": first_token_ms,
                "toolCalls": tool_calls,
                "costUsd": cost_usd,
            },
            actor=uid(user) if user else None,
            subject=uid(chat),
        )

    def beacon(
        self,
        widget: str,
        project: str,
        end_user: str,
        kind: str,
        when: str,
        *,
        visitor: str = "visitor-1",
        session: str | None = "session-1",
        customer: str | None = None,
        count: int = 1,
        latency_ms: int | None = None,
    ) -> dict[str, Any]:
        row = {
            "event_id": uuid.uuid4().hex,
            "widget_id": uid(widget),
            "project_id": uid(project),
            "end_user_id": uid(end_user),
            "visitor_id": visitor,
            "session_id": session,
            "customer_id": customer,
            "kind": kind,
            "count": count,
            "latency_ms": latency_ms,
            "client_ts": at(when),
            "received_at": at(when),
        }
        self.beacons.append(row)
        return row

    def land(self, root: Path, landed_at: str) -> None:
        """Write this batch as one events file and one usage file landed at `landed_at`."""
        if self.events:
            write_landing_file(root, "events", at(landed_at), self.events)
        if self.beacons:
            write_landing_file(root, "usage", at(landed_at), self.beacons)
