"""Named dependencies that authenticate and authorise requests.

``CurrentPrincipal`` requires a valid access token on a live session; ``OptionalPrincipal``
allows anonymous callers; ``require_permission(Perm.X)`` checks the active persona's
permissions (data in ``role_permissions``).
"""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.permissions import Perm
from app.auth.service import Authenticated, ClientInfo, auth_service
from app.core.errors import Forbidden, Unauthorized
from app.core.principal import Principal
from app.core.ratelimit import client_ip
from app.core.runtime import Runtime, runtime


async def get_runtime() -> Runtime:
    # async: a plain function would be run in the thread pool on every request.
    return runtime()


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


# auto_error=False: a missing header is fine for optional auth, and a wrong scheme gets our own
# error shape (below) rather than FastAPI's.
bearer_scheme = HTTPBearer(auto_error=False, description="Access token from POST /api/auth/login")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]


def _bearer_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None:
        return credentials.credentials
    if request.headers.get("authorization"):
        raise Unauthorized("Authorization header must be 'Bearer <token>'", code="invalid_token")
    return None


async def get_authenticated(request: Request, credentials: BearerCredentials) -> Authenticated:
    token = _bearer_token(request, credentials)
    if token is None:
        raise Unauthorized("Authentication required", code="not_authenticated")
    return await auth_service.authenticate(runtime(), token)


async def get_principal(authenticated: Annotated[Authenticated, Depends(get_authenticated)]) -> Principal:
    return authenticated.principal


async def get_optional_principal(request: Request, credentials: BearerCredentials) -> Principal | None:
    token = _bearer_token(request, credentials)
    if token is None:
        return None
    return (await auth_service.authenticate(runtime(), token)).principal


CurrentAuth = Annotated[Authenticated, Depends(get_authenticated)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]


def require_permission(permission: Perm) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            raise Forbidden(
                f"The {principal.persona} persona may not do this",
                code="permission_denied",
                details={"permission": permission.value},
            )
        return principal

    check.__name__ = f"require_{permission.value.replace(':', '_')}"
    return check


AdminPrincipal = Annotated[Principal, Depends(require_permission(Perm.USERS_MANAGE))]
UserReader = Annotated[Principal, Depends(require_permission(Perm.USERS_READ_ANY))]
ProjectCreator = Annotated[Principal, Depends(require_permission(Perm.PROJECTS_CREATE))]


def client_info(request: Request) -> ClientInfo:
    # The address the trusted proxy saw (not the first X-Forwarded-For entry: the client writes that).
    ip = client_ip(request, runtime().settings)
    return ClientInfo(ip=ip, user_agent=request.headers.get("user-agent"))


Client = Annotated[ClientInfo, Depends(client_info)]
