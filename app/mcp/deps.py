"""Who may use the MCP client routes: super admins configure, builders (and admins) read."""

from typing import Annotated

from fastapi import Depends

from app.auth.deps import CurrentPrincipal, require_permission
from app.auth.permissions import Perm
from app.core.errors import Forbidden
from app.core.principal import Principal


async def require_mcp_reader(principal: CurrentPrincipal) -> Principal:
    """Builders choose MCP clients for their projects; end users have no use for them."""
    if not (principal.can(Perm.PLATFORM_ADMIN) or principal.can(Perm.PROJECTS_CREATE)):
        raise Forbidden(
            f"The {principal.persona} persona may not do this",
            code="permission_denied",
            details={"permission": Perm.PROJECTS_CREATE.value},
        )
    return principal


McpReader = Annotated[Principal, Depends(require_mcp_reader)]
McpAdmin = Annotated[Principal, Depends(require_permission(Perm.PLATFORM_ADMIN))]
