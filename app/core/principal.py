"""Who is making a request: the verified user, session and active persona."""

from dataclasses import dataclass, field
from uuid import UUID


@dataclass(frozen=True)
class Principal:
    user_id: UUID
    session_id: UUID
    persona: str
    personas: tuple[str, ...]
    permissions: frozenset[str] = field(default_factory=frozenset)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def is_admin(self) -> bool:
        return self.persona == "super_admin"

    def is_self_or(self, user_id: UUID, permission: str) -> bool:
        return self.user_id == user_id or self.can(permission)
