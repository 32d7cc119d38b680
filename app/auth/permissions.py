"""Permission names. Which persona holds which is data (``role_permissions``), seeded by the
initial migration and editable without a deploy."""

import enum


class Perm(enum.StrEnum):
    USERS_READ_ANY = "users:read_any"
    USERS_MANAGE = "users:manage"
    PROJECTS_CREATE = "projects:create"
    PROJECTS_READ_ANY = "projects:read_any"
    PROJECTS_MANAGE_ANY = "projects:manage_any"
    PLATFORM_ADMIN = "platform:admin"
    MARKETPLACE_PURCHASE = "marketplace:purchase"
    MARKETPLACE_PUBLISH = "marketplace:publish"
