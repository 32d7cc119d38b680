from fastapi import APIRouter, Response, status

from app.auth.deps import Client, CurrentAuth, CurrentPrincipal, RuntimeDep
from app.auth.schemas import CurrentUser, LoginRequest, PersonaSwitch, RefreshRequest, TokenResponse
from app.auth.service import auth_service
from app.core.db import DB
from app.core.errors import AppError, JSONBody, error_response
from app.core.openapi import errors
from app.core.schemas import Schema

router = APIRouter(prefix="/api/auth", tags=["auth"])


class PersonaSwitchResponse(Schema):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    user: CurrentUser


@router.post("/login", response_model=TokenResponse, responses=errors(400, 401, 403, 429))
async def login(body: LoginRequest, db: DB, rt: RuntimeDep, client: Client) -> TokenResponse:
    """Exchange email and password for an access token (15 min) and a refresh token (30 days).

    Public. Rate limited per account and per client IP (429 with `Retry-After`)."""
    return await auth_service.login(db, rt, body, client)


@router.post("/refresh-token", response_model=TokenResponse, responses=errors(400, 401))
async def refresh_token(body: RefreshRequest, db: DB, rt: RuntimeDep) -> TokenResponse | Response:
    """Rotate a refresh token: the old one stops working, a new pair is returned.

    Public (the refresh token is the credential). Presenting an already-rotated token revokes
    the whole session."""
    result = await auth_service.refresh(db, rt, body.refresh_token)
    if isinstance(result, AppError):
        # Returned, not raised, so the revocation of a reused token's session still commits.
        return error_response(result.status_code, result.code, result.message, result.details, result.headers)
    return result


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401))
async def logout(db: DB, principal: CurrentPrincipal) -> None:
    """End the current session: its access and refresh tokens stop working at once."""
    await auth_service.logout(db, principal)


@router.get("/me", response_model=CurrentUser, responses=errors(401))
async def me(auth: CurrentAuth) -> JSONBody:
    """The signed-in user, the active persona and its permissions. Any persona."""
    # Already a CurrentUser in JSON form (validated when cached): no second round of validation.
    return JSONBody(auth.user)


@router.put("/update-persona", response_model=PersonaSwitchResponse, responses=errors(401, 403))
async def update_persona(
    body: PersonaSwitch, db: DB, rt: RuntimeDep, principal: CurrentPrincipal
) -> PersonaSwitchResponse:
    """Switch the active persona to another one the user holds (never grants one).

    Returns a new access token carrying the persona; the refresh token keeps working and
    refreshes into the new persona. Access tokens of the old persona stop working."""
    access, current = await auth_service.switch_persona(db, rt, principal, body.persona)
    return PersonaSwitchResponse(
        access_token=access, expires_in=rt.settings.access_token_ttl_seconds, user=current
    )
