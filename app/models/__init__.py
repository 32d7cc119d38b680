"""All SQLAlchemy models, re-exported so Alembic and the domains import one place."""

from app.models.base import Base
from app.models.billing import Invoice, InvoiceCounter, InvoiceLine, InvoiceStatus
from app.models.chat import ChatChannel, ChatMessage, ProjectChat
from app.models.event import IdempotencyRecord, OutboxEvent
from app.models.files import FileProcessing, FileStatus, KnowledgeChunk, KnowledgeFile
from app.models.ledger import LedgerEntry, LedgerTransaction, Payout, PayoutStatus
from app.models.llm import LlmModel, LlmProvider
from app.models.marketplace import Listing, ListingAudit, ListingStatus, Purchase, PurchaseStatus
from app.models.mcp import McpCheckTrigger, McpClient, McpConnection, McpConnectionStatus, McpConnectionType
from app.models.notifications import (
    BroadcastStatus,
    EmailDelivery,
    EmailStatus,
    Notification,
    NotificationBroadcast,
    NotificationCategory,
    NotificationPreference,
    NotificationTemplate,
)
from app.models.payments import Payment, PaymentStatus, PayoutAccount, WebhookEvent
from app.models.project import Project, ProjectStatus
from app.models.session import AuthSession, RefreshToken
from app.models.user import (
    Permission,
    Persona,
    Plan,
    Role,
    RolePermission,
    Subscription,
    SubscriptionStatus,
    User,
    UserRole,
    UserStatus,
)
from app.models.widgets import Widget, WidgetKind, WidgetUsage

__all__ = [
    "AuthSession",
    "Base",
    "BroadcastStatus",
    "ChatChannel",
    "ChatMessage",
    "EmailDelivery",
    "EmailStatus",
    "FileProcessing",
    "FileStatus",
    "IdempotencyRecord",
    "Invoice",
    "InvoiceCounter",
    "InvoiceLine",
    "InvoiceStatus",
    "KnowledgeChunk",
    "KnowledgeFile",
    "LedgerEntry",
    "LedgerTransaction",
    "Listing",
    "ListingAudit",
    "ListingStatus",
    "LlmModel",
    "LlmProvider",
    "McpCheckTrigger",
    "McpClient",
    "McpConnection",
    "McpConnectionStatus",
    "McpConnectionType",
    "Notification",
    "NotificationBroadcast",
    "NotificationCategory",
    "NotificationPreference",
    "NotificationTemplate",
    "OutboxEvent",
    "Payment",
    "PaymentStatus",
    "Payout",
    "PayoutAccount",
    "PayoutStatus",
    "Permission",
    "Persona",
    "Plan",
    "Project",
    "ProjectChat",
    "ProjectStatus",
    "Purchase",
    "PurchaseStatus",
    "RefreshToken",
    "Role",
    "RolePermission",
    "Subscription",
    "SubscriptionStatus",
    "User",
    "UserRole",
    "UserStatus",
    "WebhookEvent",
    "Widget",
    "WidgetKind",
    "WidgetUsage",
]
