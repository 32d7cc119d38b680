from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, status

from app.auth.deps import CurrentPrincipal, OptionalPrincipal, UserReader
from app.core.db import DB
from app.core.errors import Forbidden
from app.core.openapi import errors
from app.core.pagination import Pagination
from app.core.runtime import runtime
from app.core.schemas import NO_NUL, Page, PaginationInfo
from app.projects.schemas import ProjectOut
from app.projects.service import project_service
from app.users.schemas import (
    SubscriptionOut,
    SubscriptionUpdate,
    UserCreate,
    UserProfile,
    UserStatusUpdate,
    UserUpdate,
)
from app.users.service import user_service

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("", response_model=Page[UserProfile], responses=errors(401, 403))
async def list_users(
    db: DB,
    _: UserReader,
    page: Pagination,
    q: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="Search in email and name")
    ] = None,
    persona: Literal["super_admin", "builder", "end_user"] | None = None,
    status: Literal["active", "suspended", "deleted"] | None = None,
    plan: Annotated[str | None, Query(max_length=32)] = None,
) -> Page[UserProfile]:
    """List, search and filter users. Admins only. Sort: `createdAt`, `email`, `name` (`-` for desc)."""
    items, total = await user_service.search(db, page, q=q, persona=persona, status=status, plan=plan)
    return Page(items=items, pagination=PaginationInfo(total=total, page=page.page, limit=page.limit))


@router.post("", response_model=UserProfile, status_code=status.HTTP_201_CREATED, responses=errors(403, 409))
async def create_user(body: UserCreate, db: DB, principal: OptionalPrincipal) -> UserProfile:
    """Without a token: self sign-up as builder or end_user. With an admin token: create any persona."""
    if principal is None and not runtime().settings.self_signup_enabled:
        raise Forbidden("Sign-up is closed", code="signup_disabled")
    user = await user_service.create(db, principal, body)
    return await user_service.profile(db, user)


@router.get("/{user_id}", response_model=UserProfile, responses=errors(401, 404))
async def get_user(user_id: UUID, db: DB, principal: CurrentPrincipal) -> UserProfile:
    """A user's profile: yourself, or anyone for admins."""
    user = await user_service.get_visible(db, principal, user_id)
    return await user_service.profile(db, user)


@router.put("/{user_id}", response_model=UserProfile, responses=errors(401, 403, 404, 409))
async def update_user(user_id: UUID, body: UserUpdate, db: DB, principal: CurrentPrincipal) -> UserProfile:
    """Edit a profile: yourself (password/email need `currentPassword`), or anyone for admins."""
    user = await user_service.update(db, principal, user_id, body)
    return await user_service.profile(db, user)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403, 404))
async def delete_user(user_id: UUID, db: DB, principal: CurrentPrincipal) -> None:
    """Close an account (yourself, or admins). Soft delete: money records stay; sessions end."""
    await user_service.soft_delete(db, principal, user_id)


@router.get("/{user_id}/projects", response_model=Page[ProjectOut], responses=errors(401, 404))
async def list_user_projects(
    user_id: UUID, db: DB, principal: CurrentPrincipal, page: Pagination
) -> Page[ProjectOut]:
    """Projects owned by a user: yourself, or anyone for admins."""
    await user_service.get_visible(db, principal, user_id)
    items, total = await project_service.list_visible(db, principal, page, owner_id=user_id)
    return Page(items=items, pagination=PaginationInfo(total=total, page=page.page, limit=page.limit))


@router.put("/{user_id}/status", response_model=UserProfile, responses=errors(401, 403, 404, 409))
async def set_user_status(
    user_id: UUID, body: UserStatusUpdate, db: DB, principal: CurrentPrincipal
) -> UserProfile:
    """Suspend or activate an account. Admins only. Suspension ends the user's sessions at once."""
    user = await user_service.set_status(db, principal, user_id, body)
    return await user_service.profile(db, user)


@router.put(
    "/{user_id}/subscription", response_model=SubscriptionOut, responses=errors(401, 403, 404, 409, 503)
)
async def change_subscription(
    user_id: UUID, body: SubscriptionUpdate, db: DB, principal: CurrentPrincipal
) -> SubscriptionOut:
    """Change plan (free/pro/business). Admins assign any plan without payment; users move to
    free plans at once and buy paid ones: with the local provider the plan is paid and switched at
    once, with Stripe the answer is `pending_payment` with a `checkoutUrl` and the plan switches
    when the payment succeeds."""
    subscription, limits, checkout = await user_service.change_plan(db, principal, user_id, body)
    pending = checkout is not None and not checkout.paid
    return SubscriptionOut(
        id=subscription.id,
        user_id=subscription.user_id,
        plan=subscription.plan,
        status="pending_payment" if pending else subscription.status,
        start_date=subscription.start_date,
        end_date=subscription.end_date,
        limits=limits,
        pending_plan=body.plan if pending else None,
        invoice_id=checkout.invoice_id if checkout else None,
        checkout_url=checkout.checkout_url if checkout else None,
    )
