"""Demo data for ``make run``: an admin, builders, end users, projects in every state, listings
and purchases (on the local provider, so sales, ledger entries and invoices exist too), a week
of widget usage for every purchase, so the analytics have something to show, and a help-centre
knowledge file on every Support Copilot (the worker processes it; the offline model answers from
it in the studio chat with no API key)."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.principal import Principal
from app.core.usage import UsageBeacon, publish_usage
from app.files.service import file_service
from app.marketplace.schemas import PublishRequest, PurchaseRequest
from app.marketplace.service import marketplace_service
from app.models import ProjectStatus, User
from app.projects.schemas import ProjectCreate, ProjectStatusUpdate
from app.projects.service import project_service
from app.users.schemas import SubscriptionUpdate, UserCreate
from app.users.service import bootstrap_admin, user_service

DEMO_PASSWORD = "bazaar-demo-pass"


@dataclass(frozen=True)
class DemoLogin:
    email: str
    persona: str


BUILDERS = [
    ("ada@builders.example", "Ada Builder"),
    ("grace@builders.example", "Grace Builder"),
]
END_USERS = [
    ("sam@shop.example", "Sam Shopkeeper"),
    ("lee@clinic.example", "Lee Clinic"),
]
LISTING_PRICES = [1900, 900]  # minor units, per demo builder
PROJECTS = [
    ("Support Copilot", "Answers customer questions from your help centre", ProjectStatus.READY),
    ("Recipe Helper", "Suggests recipes from what is in the fridge", ProjectStatus.IN_DEVELOPMENT),
    ("Contract Reader", "Summarises contracts and flags risky clauses", ProjectStatus.DRAFT),
]


async def database_is_empty(db: AsyncSession) -> bool:
    return int((await db.execute(select(func.count()).select_from(User))).scalar_one()) == 0


async def seed_demo(db: AsyncSession, settings: Settings) -> list[DemoLogin]:
    admin, _ = await bootstrap_admin(
        db, email="admin@bazaar.example", password=DEMO_PASSWORD, name="Demo Admin"
    )
    logins = [DemoLogin(admin.email, "super_admin")]
    listed: list[UUID] = []
    admin_actor = await _actor(db, admin.id, "super_admin")
    for index, (email, name) in enumerate(BUILDERS):
        # The first builder also buys (holds end_user too), as builders often do.
        extra = ["end_user"] if index == 0 else []
        body = UserCreate(
            email=email, password=DEMO_PASSWORD, name=name, persona="builder", personas=["builder", *extra]
        )
        builder = await user_service.create(db, admin_actor, body)
        # On pro, so the demo builders have room for more projects than the free plan's three.
        await user_service.change_plan(db, admin_actor, builder.id, SubscriptionUpdate(plan="pro"))
        logins.append(DemoLogin(email, "builder"))
        builder_actor = await _actor(db, builder.id, "builder")
        for title, description, target in PROJECTS:
            project = await project_service.create(
                db,
                builder_actor,
                ProjectCreate(
                    name=f"{title}" if index == 0 else f"{title} ({name.split()[0]})",
                    description=description,
                    prompt=f"You are {title}. {description}. Be concise and cite your sources.",
                    llm="offline",
                ),
            )
            if title == "Support Copilot":
                await _demo_knowledge(db, settings, builder_actor, project.id)
            path = {
                ProjectStatus.DRAFT: [],
                ProjectStatus.IN_DEVELOPMENT: ["in_development"],
                ProjectStatus.READY: ["in_development", "ready"],
            }[target]
            for step in path:
                await project_service.set_status(
                    db, builder_actor, project.id, ProjectStatusUpdate(status=step)
                )
            if target == ProjectStatus.READY:
                await marketplace_service.publish(
                    db,
                    settings,
                    builder_actor,
                    project.id,
                    PublishRequest(
                        price_minor=LISTING_PRICES[index],
                        currency="usd",
                        description=description,
                        category="customer-support",
                        tags=["support", "helpdesk"],
                    ),
                )
                listed.append(project.id)
    for email, name in END_USERS:
        buyer = await user_service.create(
            db, admin_actor, UserCreate(email=email, password=DEMO_PASSWORD, name=name, persona="end_user")
        )
        logins.append(DemoLogin(email, "end_user"))
        buyer_actor = await _actor(db, buyer.id, "end_user")
        # Every demo shop has bought every listing: sales, ledger and invoices to look at.
        for project_id in listed:
            await marketplace_service.purchase(
                db,
                settings,
                buyer_actor,
                PurchaseRequest(project_id=project_id),
                f"demo-{buyer.id}-{project_id}",
            )
            await _demo_usage(db, settings, buyer.id, project_id)
    return logins


HELP_CENTRE = """# Help centre

## Delivery
Orders leave our warehouse within two working days. Standard delivery takes three to five
working days; express delivery arrives the next working day when ordered before 2 pm.

## Returns and refunds
You can return any item within 30 days of delivery for a full refund. Items must be unused and
in their original packaging. Refunds reach your card within five working days of the return
arriving. Shipping costs are refunded only when the item was faulty.

## Warranty
Every product carries a two year warranty against manufacturing defects. To claim, send the
order number and a photo of the fault to support@shop.example.

## Opening hours
Support answers by chat and email from 8 am to 6 pm, Monday to Friday.
"""


async def _demo_knowledge(db: AsyncSession, settings: Settings, owner: Principal, project_id: UUID) -> None:
    """Uploaded through the same streamed path as ``POST /api/files/upload`` and queued for
    processing (the worker started by ``bazaar dev`` runs it)."""
    boundary = "bazaar-demo-boundary"
    body = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="projectId"\r\n\r\n{project_id}\r\n'
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="help-centre.md"\r\n'
        "Content-Type: text/markdown\r\n\r\n"
        f"{HELP_CENTRE}\r\n"
        f"--{boundary}--\r\n"
    ).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    await file_service.upload(
        db,
        settings,
        owner,
        content_type=f"multipart/form-data; boundary={boundary}",
        content_length=len(body),
        body=chunks(),
    )


async def _demo_usage(db: AsyncSession, settings: Settings, end_user_id: UUID, project_id: UUID) -> None:
    """A week of beacons from the widget the end user would have embedded (the widget issue
    makes real ones): through the outbox, which works with or without Redis."""
    widget_id = uuid5(NAMESPACE_URL, f"demo-widget:{end_user_id}:{project_id}")
    now = datetime.now(UTC)
    for days_ago in range(7):
        visitors = 2 + (days_ago * 3 + project_id.int) % 5
        beacons = [
            UsageBeacon(
                event_id=uuid5(widget_id, f"{days_ago}:{visitor}:{kind}:{n}").hex,
                widget_id=str(widget_id),
                project_id=str(project_id),
                end_user_id=str(end_user_id),
                visitor_id=f"demo-visitor-{visitor}",
                session_id=f"demo-session-{days_ago}-{visitor}",
                kind=kind,
                count=count,
                latency_ms=400 + 37 * n if kind == "message" else None,
            )
            for visitor in range(visitors)
            for kind, times, count in (
                ("impression", 1, 1),
                ("open", 1, 1),
                ("message", 2, 1),
                ("tokens", 2, 180),
            )
            for n in range(times)
        ]
        await publish_usage(
            beacons, settings=settings, redis=None, db=db, received_at=now - timedelta(days=days_ago)
        )


async def _actor(db: AsyncSession, user_id: UUID, persona: str) -> Principal:
    return Principal(
        user_id=user_id,
        session_id=user_id,
        persona=persona,
        personas=(persona,),
        permissions=frozenset(await user_service.permissions_of(db, persona)),
    )
