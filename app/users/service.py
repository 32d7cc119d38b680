"""User accounts: sign-up, profile, personas held, status, plan and soft delete."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.permissions import Perm
from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.events import record_event
from app.core.pagination import PageParams, apply_sort, paginate
from app.core.principal import Principal
from app.core.security import hash_password, verify_password
from app.models import Persona, Plan, Subscription, SubscriptionStatus, User, UserStatus
from app.users.repository import user_repository
from app.users.schemas import SubscriptionUpdate, UserCreate, UserProfile, UserStatusUpdate, UserUpdate

SELF_SERVICE_PERSONAS = {Persona.BUILDER.value, Persona.END_USER.value}

# Called (inside the transaction) when a user's access changes: suspension, deletion, persona
# set. The auth domain registers one to end sessions and drop cached principals.
AccessListener = Callable[[AsyncSession, UUID, str], Awaitable[None]]


@dataclass(frozen=True)
class PlanCheckout:
    """A paid plan being bought: its invoice, and either paid already (the plan switched in the
    same transaction) or waiting for the customer at ``checkout_url``."""

    invoice_id: UUID
    paid: bool
    checkout_url: str | None


# Sells a paid plan to a user buying it for themselves, inside the transaction. The billing
# domain registers it (users never import billing) and calls ``apply_plan`` once it is paid.
PaidPlanCheckout = Callable[[AsyncSession, User, Plan], Awaitable[PlanCheckout]]


class UserService:
    def __init__(self) -> None:
        self.access_listeners: list[AccessListener] = []
        self.paid_plan_checkout: PaidPlanCheckout | None = None

    async def _access_changed(self, db: AsyncSession, user_id: UUID, reason: str) -> None:
        for listener in self.access_listeners:
            await listener(db, user_id, reason)

    async def profile(self, db: AsyncSession, user: User) -> UserProfile:
        personas = await user_repository.personas(db, user.id)
        return self._profile(user, personas)

    async def profiles(self, db: AsyncSession, users: list[User]) -> list[UserProfile]:
        personas = await user_repository.personas_for(db, [u.id for u in users])
        return [self._profile(u, personas[u.id]) for u in users]

    @staticmethod
    def _profile(user: User, personas: list[str]) -> UserProfile:
        return UserProfile(
            id=user.id,
            email=user.email,
            name=user.name,
            persona=user.default_persona,
            personas=personas,
            plan=user.plan,
            status=user.status,
            metadata=user.metadata_,
            created_at=user.created_at,
            updated_at=user.updated_at,
            last_login_at=user.last_login_at,
        )

    async def get_visible(self, db: AsyncSession, actor: Principal, user_id: UUID) -> User:
        """The user, if ``actor`` may see them (themselves, or an admin)."""
        if not actor.is_self_or(user_id, Perm.USERS_READ_ANY):
            raise NotFound("User not found", code="user_not_found")
        user = await user_repository.get(db, user_id)
        if user is None:
            raise NotFound("User not found", code="user_not_found")
        return user

    async def get_by_email(self, db: AsyncSession, email: str) -> User | None:
        return await user_repository.get_by_email(db, email)

    async def get(self, db: AsyncSession, user_id: UUID, *, for_update: bool = False) -> User | None:
        return await user_repository.get(db, user_id, for_update=for_update)

    async def personas(self, db: AsyncSession, user_id: UUID) -> list[str]:
        return await user_repository.personas(db, user_id)

    async def permissions_of(self, db: AsyncSession, persona: str) -> list[str]:
        return await user_repository.permissions_of(db, persona)

    async def search(
        self,
        db: AsyncSession,
        params: PageParams,
        *,
        q: str | None,
        persona: str | None,
        status: str | None,
        plan: str | None,
    ) -> tuple[list[UserProfile], int]:
        stmt = user_repository.search(q=q, persona=persona, status=status, plan=plan)
        stmt = apply_sort(
            stmt,
            params.sort,
            {"createdAt": User.created_at, "email": User.email, "name": User.name},
            default="-createdAt",
            tiebreak=User.id,
        )
        users, total = await paginate(db, stmt, params)
        return await self.profiles(db, users), total

    async def create(self, db: AsyncSession, actor: Principal | None, body: UserCreate) -> User:
        personas: set[str] = {body.persona, *(body.personas or [])}
        is_admin = actor is not None and actor.can(Perm.USERS_MANAGE)
        if actor is not None and not is_admin:
            raise Forbidden("Only administrators create accounts for others", code="forbidden")
        if not is_admin and not personas <= SELF_SERVICE_PERSONAS:
            raise Forbidden("Sign-up may choose builder or end_user only", code="persona_not_allowed")
        if await user_repository.email_taken(db, body.email):
            raise Conflict("An account with this email already exists", code="email_taken")
        user = User(
            email=str(body.email).lower(),
            name=body.name,
            password_hash=await hash_password(body.password),
            default_persona=body.persona,
            status=UserStatus.ACTIVE,
            plan="free",
            metadata_=body.metadata,
        )
        db.add(user)
        await db.flush()
        await user_repository.set_personas(db, user.id, personas)
        db.add(Subscription(user_id=user.id, plan="free", status=SubscriptionStatus.ACTIVE))
        await record_event(
            db,
            "user.created",
            actor_id=actor.user_id if actor else user.id,
            subject_id=user.id,
            payload={
                "persona": body.persona,
                "personas": sorted(personas),
                "plan": "free",
                "signup": actor is None,
            },
        )
        return user

    async def update(self, db: AsyncSession, actor: Principal, user_id: UUID, body: UserUpdate) -> User:
        user = await self._get_for_change(db, actor, user_id)
        is_admin = actor.can(Perm.USERS_MANAGE)
        acting_on_self = actor.user_id == user_id
        changed: dict[str, Any] = {}
        new_email = str(body.email).lower() if body.email is not None else None
        sensitive = body.password is not None or (new_email is not None and new_email != user.email)
        if (
            sensitive
            and acting_on_self
            and not await verify_password(user.password_hash, body.current_password or "")
        ):
            raise Forbidden("currentPassword is wrong or missing", code="current_password_required")
        if new_email is not None and new_email != user.email:
            if await user_repository.email_taken(db, new_email, excluding=user.id):
                raise Conflict("An account with this email already exists", code="email_taken")
            user.email = new_email
            changed["email"] = True
        if body.name is not None and body.name != user.name:
            user.name = body.name
            changed["name"] = True
        if body.password is not None:
            user.password_hash = await hash_password(body.password)
            changed["password"] = True
        if body.metadata is not None:
            user.metadata_ = body.metadata
            changed["metadata"] = True
        held = set(await user_repository.personas(db, user.id))
        if body.personas is not None:
            wanted: set[str] = set(body.personas)
            if not wanted:
                raise ValidationFailed("A user must hold at least one persona", code="personas_empty")
            if not is_admin and (wanted ^ held) - SELF_SERVICE_PERSONAS:
                raise Forbidden("Only administrators grant or remove super_admin", code="persona_not_allowed")
            if wanted != held:
                await user_repository.set_personas(db, user.id, wanted)
                await record_event(
                    db,
                    "user.roles_changed",
                    actor_id=actor.user_id,
                    subject_id=user.id,
                    payload={"from": sorted(held), "to": sorted(wanted)},
                )
                held = wanted
                if user.default_persona not in held:
                    user.default_persona = sorted(held)[0]
                await self._access_changed(db, user.id, "roles_changed")
        if body.persona is not None and body.persona != user.default_persona:
            if body.persona not in held:
                raise Forbidden("You do not hold that persona", code="persona_not_held")
            user.default_persona = body.persona
            changed["persona"] = True
        if changed:
            user.updated_at = datetime.now(UTC)
            await record_event(
                db,
                "user.updated",
                actor_id=actor.user_id,
                subject_id=user.id,
                payload={"fields": sorted(changed)},
            )
            await self._access_changed(db, user.id, "profile_updated")
        await db.flush()
        return user

    async def set_status(
        self, db: AsyncSession, actor: Principal, user_id: UUID, body: UserStatusUpdate
    ) -> User:
        if not actor.can(Perm.USERS_MANAGE):
            raise Forbidden("Only administrators change account status")
        if actor.user_id == user_id:
            raise Conflict("Administrators cannot change their own status", code="cannot_change_self")
        user = await user_repository.get(db, user_id)
        if user is None:
            raise NotFound("User not found", code="user_not_found")
        if user.status == body.status:
            return user
        previous = user.status
        user.status = body.status
        user.updated_at = datetime.now(UTC)
        event = "user.suspended" if body.status == "suspended" else "user.activated"
        await record_event(
            db,
            event,
            actor_id=actor.user_id,
            subject_id=user.id,
            payload={"from": previous, "to": body.status, "reason": body.reason},
        )
        if body.status == "suspended":
            await self._access_changed(db, user.id, "user_suspended")
        await db.flush()
        return user

    async def change_plan(
        self, db: AsyncSession, actor: Principal, user_id: UUID, body: SubscriptionUpdate
    ) -> tuple[Subscription, dict[str, Any], PlanCheckout | None]:
        """Administrators assign any plan. Users move to free plans at once and buy paid ones:
        the checkout is returned; until it is paid the current subscription stays."""
        user = await self._get_for_change(db, actor, user_id)
        plan = await user_repository.get_plan(db, body.plan)
        if plan is None:
            raise ValidationFailed(f"Unknown plan {body.plan!r}", code="unknown_plan")
        current = await user_repository.active_subscription(db, user.id)
        if current is not None and current.plan == plan.code:
            return current, plan.limits, None
        if plan.price_minor > 0 and not actor.can(Perm.USERS_MANAGE):
            if self.paid_plan_checkout is None:
                raise Forbidden(
                    "Paid plans are bought through billing; administrators can assign them",
                    code="payment_required",
                )
            checkout = await self.paid_plan_checkout(db, user, plan)
            if checkout.paid:
                current = await user_repository.active_subscription(db, user.id)
            if current is None:
                raise Conflict("The account has no subscription to change", code="no_subscription")
            limits = plan.limits if checkout.paid else await self.plan_limits(db, current.plan)
            return current, limits, checkout
        return await self._switch_plan(db, user, plan, actor_id=actor.user_id), plan.limits, None

    async def apply_plan(
        self, db: AsyncSession, user_id: UUID, plan_code: str, *, actor_id: UUID | None, invoice_id: UUID
    ) -> None:
        """Switch a user to the plan they paid for (billing calls this when the invoice is paid)."""
        user = await user_repository.get(db, user_id, for_update=True)
        plan = await user_repository.get_plan(db, plan_code)
        if user is None or plan is None:
            return
        current = await user_repository.active_subscription(db, user.id)
        if current is None or current.plan != plan.code:
            await self._switch_plan(db, user, plan, actor_id=actor_id, invoice_id=invoice_id)

    async def _switch_plan(
        self,
        db: AsyncSession,
        user: User,
        plan: Plan,
        *,
        actor_id: UUID | None,
        invoice_id: UUID | None = None,
    ) -> Subscription:
        current = await user_repository.active_subscription(db, user.id)
        now = datetime.now(UTC)
        if current is not None:
            await user_repository.end_subscription(db, current, now)
        subscription = Subscription(
            user_id=user.id, plan=plan.code, status=SubscriptionStatus.ACTIVE, start_date=now
        )
        db.add(subscription)
        previous = user.plan
        user.plan = plan.code
        user.updated_at = now
        await record_event(
            db,
            "user.subscription_changed",
            actor_id=actor_id,
            subject_id=user.id,
            payload={
                "from": previous,
                "to": plan.code,
                "priceMinor": plan.price_minor,
                "currency": plan.currency,
                "invoiceId": str(invoice_id) if invoice_id else None,
            },
        )
        await self._access_changed(db, user.id, "plan_changed")
        await db.flush()
        return subscription

    async def plan_limits(self, db: AsyncSession, plan_code: str) -> dict[str, Any]:
        plan = await user_repository.get_plan(db, plan_code)
        return dict(plan.limits) if plan else {}

    async def soft_delete(self, db: AsyncSession, actor: Principal, user_id: UUID) -> None:
        """Closes the account but keeps the row, so purchases and ledger entries stay valid."""
        user = await self._get_for_change(db, actor, user_id)
        now = datetime.now(UTC)
        user.status = UserStatus.DELETED
        user.deleted_at = now
        user.updated_at = now
        await record_event(db, "user.deleted", actor_id=actor.user_id, subject_id=user.id, payload={})
        await self._access_changed(db, user.id, "user_deleted")
        await db.flush()

    async def _get_for_change(self, db: AsyncSession, actor: Principal, user_id: UUID) -> User:
        if not actor.is_self_or(user_id, Perm.USERS_MANAGE):
            if actor.can(Perm.USERS_READ_ANY):
                raise Forbidden("You may not change this user")
            raise NotFound("User not found", code="user_not_found")
        user = await user_repository.get(db, user_id)
        if user is None:
            raise NotFound("User not found", code="user_not_found")
        return user

    async def record_login(self, db: AsyncSession, user: User) -> None:
        user.last_login_at = datetime.now(UTC)


user_service = UserService()


async def bootstrap_admin(
    db: AsyncSession, *, email: str, password: str | None, name: str
) -> tuple[User, bool]:
    """Create a super admin, or grant super_admin to an existing account (``bazaar create-admin``).

    Returns the user and whether it was newly created."""
    user = await user_repository.get_by_email(db, email)
    if user is None:
        if not password:
            raise ValidationFailed("A password is needed to create a new admin", code="password_required")
        user = User(
            email=email.lower(),
            name=name,
            password_hash=await hash_password(password),
            default_persona=Persona.SUPER_ADMIN,
            status=UserStatus.ACTIVE,
            plan="free",
            metadata_={},
        )
        db.add(user)
        await db.flush()
        db.add(Subscription(user_id=user.id, plan="free", status=SubscriptionStatus.ACTIVE))
        await user_repository.set_personas(db, user.id, {Persona.SUPER_ADMIN.value})
        await record_event(
            db,
            "user.created",
            actor_id=None,
            subject_id=user.id,
            payload={"persona": "super_admin", "personas": ["super_admin"], "plan": "free", "signup": False},
        )
        return user, True
    held = set(await user_repository.personas(db, user.id))
    if Persona.SUPER_ADMIN not in held:
        await user_repository.set_personas(db, user.id, held | {Persona.SUPER_ADMIN.value})
        await record_event(
            db,
            "user.roles_changed",
            actor_id=None,
            subject_id=user.id,
            payload={"from": sorted(held), "to": sorted(held | {"super_admin"})},
        )
        await user_service._access_changed(db, user.id, "roles_changed")
    if password:
        user.password_hash = await hash_password(password)
    return user, False
