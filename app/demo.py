"""Demo data for ``make run``: an admin, builders, end users, projects in every state, listings
and purchases (on the local provider, so sales, ledger entries and invoices exist too)."""

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.principal import Principal
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
    return logins


async def _actor(db: AsyncSession, user_id: UUID, persona: str) -> Principal:
    return Principal(
        user_id=user_id,
        session_id=user_id,
        persona=persona,
        personas=(persona,),
        permissions=frozenset(await user_service.permissions_of(db, persona)),
    )
