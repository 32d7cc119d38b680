"""All configuration in one place.

Every field reads the environment variable of the same name in upper case (``DATABASE_URL``,
``REDIS_URL``...) or a ``.env`` file. ``None`` for ``database_url`` or ``redis_url`` selects the
embedded defaults: an embedded Postgres under ``var/`` and in-process fallbacks for Redis.
The README's configuration table is generated from the descriptions below.
"""

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        "development",
        description="Deployment environment; `production` refuses to start without `JWT_SECRET`.",
    )
    var_dir: Path = Field(
        Path("var"), description="Folder for local state: embedded Postgres data, secret key, files."
    )
    database_url: str | None = Field(
        None,
        description="Postgres URL (`postgresql://user:pass@host/db`). Unset: embedded Postgres "
        "(`pgserver`) with data under `var/pgdata`.",
    )
    database_pool_size: int = Field(10, ge=1, description="Connections kept open per process.")
    database_max_overflow: int = Field(20, ge=0, description="Extra connections under load.")
    redis_url: str | None = Field(
        None,
        description="Redis URL for the session cache (with pub/sub invalidation) and rate limits. "
        "Unset: in-process fallbacks (single API process only).",
    )
    redis_prefix: str = Field("bazaar:", description="Prefix of every Redis key this app writes.")
    jwt_secret: SecretStr | None = Field(
        None,
        description="Secret signing access tokens. Unset: a random secret is generated once and "
        "kept in `var/jwt-secret` (refused in production).",
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field(
        "HS256", description="Signature algorithm of access tokens."
    )
    access_token_ttl_seconds: int = Field(900, ge=30, description="Access token lifetime.")
    refresh_token_ttl_days: int = Field(30, ge=1, description="Refresh token / session lifetime.")
    session_cache_ttl_seconds: int = Field(
        60, ge=0, description="How long a verified session is cached (revocation clears it at once)."
    )
    login_rate_limit_account: str = Field(
        "10/5minutes", description="Login attempts allowed per account (`limits` syntax)."
    )
    login_rate_limit_ip: str = Field(
        "60/5minutes", description="Login attempts allowed per client IP (`limits` syntax)."
    )
    trust_forwarded_for: bool = Field(
        False, description="Take the client IP from `X-Forwarded-For` (only behind a trusted proxy)."
    )
    self_signup_enabled: bool = Field(
        True, description="Allow `POST /api/users` without a token (builder or end_user only)."
    )
    max_request_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest JSON request body accepted (413 above)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS for the frontend (JSON list)."
    )
    log_level: str = Field("INFO", description="Log level of the `bazaar` loggers.")
    log_json: bool = Field(True, description="Structured JSON logs (one object per line).")
    api_host: str = Field("127.0.0.1", description="Address `bazaar serve` binds.")
    api_port: int = Field(8000, description="Port `bazaar serve` binds.")
    public_base_url: str = Field(
        "http://127.0.0.1:8000", description="Where users reach the platform (checkout return URLs, links)."
    )
    listing_review_required: bool = Field(
        False, description="New listings wait in `pending_review` until an administrator activates them."
    )
    platform_fee_bps: int = Field(
        2000,
        ge=0,
        le=10_000,
        description="Platform fee in basis points when the builder's plan does not set `platformFeeBps`.",
    )
    payment_provider: Literal["local", "stripe"] = Field(
        "local",
        description="`local` settles at once with the same events and ledger entries; `stripe` uses "
        "Stripe Checkout and Connect.",
    )
    local_processor_fee_bps: int = Field(
        290, ge=0, le=10_000, description="Processor fee the `local` provider simulates: percentage part."
    )
    local_processor_fee_fixed_minor: int = Field(
        30, ge=0, description="Processor fee the `local` provider simulates: fixed part, minor units."
    )
    stripe_api_key: SecretStr | None = Field(None, description="Stripe secret key (`sk_...`).")
    stripe_webhook_secret: SecretStr | None = Field(
        None, description="Signing secret of the Stripe webhook endpoint (`whsec_...`)."
    )
    stripe_api_base: str | None = Field(
        None, description="Override of Stripe's API address (tests point it at a local fake)."
    )
    payout_settlement_delay_days: int = Field(
        7, ge=0, description="Days a sale's builder share waits before it can be paid out (refund window)."
    )
    payout_minimum_minor: int = Field(
        1000, ge=1, description="Smallest balance paid out, in minor units of the currency."
    )
    invoice_tax_rate_bps: int = Field(
        0, ge=0, le=10_000, description="Tax rate applied to invoices, in basis points (0: no tax line)."
    )
    invoice_issuer: str = Field(
        "Bazaar Marketplace Ltd., 1 Market Street, London", description="Seller name and address on invoices."
    )
    warehouse_dir: Path = Field(
        Path("warehouse"),
        description="Warehouse root: `landing/` (Parquet from the worker), `build/` (dbt's DuckDB file), "
        "`serve/<version>/` and `serve/current` (published marts the API and analysts read).",
    )
    usage_stream: str = Field(
        "usage", description="Redis Stream (under `REDIS_PREFIX`) that receives widget usage beacons."
    )
    landing_batch_size: int = Field(
        5000, ge=1, description="Most events the relay or the stream consumer writes into one Parquet file."
    )
    landing_flush_seconds: float = Field(
        1.0, gt=0, description="Longest an accepted event waits before the worker lands it."
    )
    landing_claim_idle_seconds: float = Field(
        60.0,
        gt=0,
        description="Stream entries delivered to a consumer that died are reclaimed (XAUTOCLAIM) after "
        "being pending this long.",
    )
    warehouse_refresh_seconds: int = Field(
        30,
        ge=5,
        description="Shortest time between two warehouse refreshes. Dagster's sensor looks for new "
        "landing files every 5 s and requests a refresh when one is due and no warehouse run is "
        "queued or running.",
    )
    warehouse_keep_versions: int = Field(
        3, ge=2, description="Published versions kept under `warehouse/serve/` (older ones are deleted)."
    )
    warehouse_stale_seconds: int = Field(
        900, ge=60, description="`/readyz` reports the warehouse `stale` when the served version is older."
    )
    analytics_cache_ttl_seconds: int = Field(
        300, ge=0, description="Analytics responses are cached this long (keys include the mart version)."
    )
    dagster_port: int = Field(3000, description="Port of the Dagster UI started by `bazaar dev`.")
    encryption_key: SecretStr | None = Field(
        None,
        description="Fernet key encrypting secrets at rest (MCP headers and variables, LLM API keys). "
        "Unset: a key is generated once and kept in `var/encryption-key` (refused in production).",
    )
    file_storage: Literal["local", "s3"] = Field(
        "local", description="Where uploaded knowledge files go: `local` (under `FILES_DIR`) or `s3`."
    )
    files_dir: Path | None = Field(
        None, description="Folder of the `local` file storage. Unset: `files/` under `VAR_DIR`."
    )
    s3_bucket: str | None = Field(None, description="Bucket of the `s3` file storage.")
    s3_endpoint_url: str | None = Field(
        None, description="Endpoint of an S3-compatible store (MinIO, R2...). Unset: AWS."
    )
    s3_region: str = Field("us-east-1", description="Region of the `s3` file storage.")
    s3_access_key_id: str | None = Field(None, description="Access key of the `s3` file storage.")
    s3_secret_access_key: SecretStr | None = Field(None, description="Secret key of the `s3` file storage.")
    file_max_bytes: int = Field(
        20 * 1024 * 1024,
        ge=1024,
        description="Largest knowledge file accepted when the uploader's plan sets no `maxFileBytes`.",
    )
    file_extract_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Longest the text extraction of one knowledge file may run (in a helper process, "
        "killed past it); the file then fails as taking too long.",
    )
    file_extract_max_memory_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=128 * 1024 * 1024,
        description="Address space of the text extraction helper process; a file that needs more fails.",
    )
    file_max_text_chars: int = Field(
        5_000_000,
        ge=1000,
        description="Most characters of text one knowledge file may yield; extraction stops and the "
        "file fails past it.",
    )
    file_processing_timeout_seconds: int = Field(
        300,
        ge=30,
        description="A file still `processing` after this long is taken to have lost its worker: "
        "the sweep queues it again once (then fails it) and `POST /api/files/process` may restart "
        "it. Keep it above `FILE_EXTRACT_TIMEOUT_SECONDS`.",
    )
    chunk_chars: int = Field(1200, ge=200, description="Target size of a knowledge chunk, in characters.")
    chunk_overlap_chars: int = Field(200, ge=0, description="Characters shared by consecutive chunks.")
    retrieval_top_k: int = Field(4, ge=1, le=50, description="Knowledge chunks put into a chat prompt.")
    llm_timeout_seconds: float = Field(
        60.0, gt=0, description="Longest wait for an LLM provider's next byte before the call fails."
    )
    llm_call_deadline_seconds: float = Field(
        300.0,
        gt=0,
        description="Longest one LLM call may take in all (retries and streaming included) before it "
        "fails as `llm_timeout`: a provider that trickles tokens cannot hold a chat turn forever.",
    )
    llm_max_retries: int = Field(
        2, ge=0, description="Retries (with exponential backoff) when a provider answers 429 or 5xx."
    )
    llm_retry_backoff_seconds: float = Field(
        0.5,
        ge=0,
        description="First retry delay for an LLM provider (doubled per retry, with jitter) when it "
        "sends no `Retry-After`.",
    )
    llm_max_output_tokens: int = Field(
        4096, ge=1, description="Most tokens one LLM call may generate (Anthropic requires a limit)."
    )
    chat_max_tool_steps: int = Field(
        5, ge=0, le=50, description="Most LLM-tool round trips one chat answer may take."
    )
    chat_history_messages: int = Field(
        20, ge=0, description="Earlier messages of a conversation sent to the LLM with a new one."
    )
    mcp_call_timeout_seconds: float = Field(
        20.0, gt=0, description="Longest an MCP server may take to connect or answer one tool call."
    )
    mcp_result_max_chars: int = Field(
        8000, ge=100, description="A tool result longer than this is cut before it reaches the LLM."
    )
    mcp_stdio_allowed_commands: list[str] = Field(
        default_factory=list,
        description="Commands a stdio MCP client may run (JSON list of executable names or paths). "
        "Empty: stdio clients are refused.",
    )
    mcp_allow_private_networks: bool = Field(
        False,
        description="Let remote MCP clients reach loopback and private addresses (off: SSRF protection).",
    )
    mcp_health_check_cron: str = Field(
        "*/5 * * * *", description="When the worker checks every active MCP client (cron)."
    )
    widget_session_ttl_seconds: int = Field(
        3600, ge=60, description="Lifetime of a widget visitor's session token (`POST /widget/v1/session`)."
    )
    widget_beacon_rate_limit: str = Field(
        "6000/minute", description="Usage beacon requests one widget may send, all visitors together."
    )
    widget_session_rate_limit: str = Field(
        "30/minute", description="Widget sessions one visitor may open (`limits` syntax)."
    )
    widget_session_rate_limit_ip: str = Field(
        "120/minute",
        description="Widget sessions one client IP may open, all widgets together (every page view "
        "opens one; `limits` syntax).",
    )
    widget_message_rate_limit_ip: str = Field(
        "20/minute;300/day",
        description="Widget chat messages one client IP may send, all widgets together (`limits` syntax).",
    )
    widget_message_rate_limit: str = Field(
        "120/minute",
        description="Widget chat messages one widget may take, all visitors together: caps how fast "
        "its quota and LLM spend can go (`limits` syntax).",
    )
    email_backend: Literal["log", "smtp"] | None = Field(
        None,
        description="How the worker sends email: `smtp` (to `SMTP_HOST`) or `log` (appended to "
        "`notifications/mail.log` under `VAR_DIR`, nothing leaves the machine). Unset: `smtp` when "
        "`SMTP_HOST` is set, else `log`.",
    )
    smtp_host: str | None = Field(None, description="SMTP server that relays the platform's email.")
    smtp_port: int = Field(587, ge=1, le=65535, description="Port of the SMTP server.")
    smtp_username: str | None = Field(None, description="SMTP login (unset: no authentication).")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_starttls: bool = Field(
        True,
        description="Require STARTTLS on a plain connection (port 587); a server that does not offer "
        "it fails the send. Ignored with `SMTP_TLS`.",
    )
    smtp_tls: bool = Field(False, description="Connect with TLS from the start (port 465).")
    smtp_timeout_seconds: float = Field(
        30.0, gt=0, description="Longest the SMTP server may take to connect or answer one command."
    )
    mail_from: str = Field(
        "Bazaar <no-reply@bazaar.local>", description="`From` of every email the platform sends."
    )
    email_max_attempts: int = Field(
        6,
        ge=1,
        le=50,
        description="Tries of one email before it is given up as `dead` (an administrator can retry it).",
    )
    email_retry_base_seconds: float = Field(
        60.0,
        ge=0,
        description="Wait before the second try of an email; doubled for each further try (with "
        "jitter, at most an hour).",
    )
    worker_concurrency: int = Field(
        4, ge=1, le=64, description="Jobs one `bazaar worker` process runs at the same time."
    )
    notify_batch_size: int = Field(
        200,
        ge=1,
        description="Most outbox events the worker's notification dispatcher turns into notifications "
        "in one transaction.",
    )
    notify_poll_seconds: float = Field(
        1.0, gt=0, description="Longest a domain event waits before the dispatcher notifies anyone of it."
    )
    broadcast_batch_size: int = Field(
        1000, ge=1, description="Users one transaction of an admin's broadcast delivers to."
    )
    notification_stream_heartbeat_seconds: float = Field(
        15.0,
        gt=0,
        description="An idle notification stream sends a comment this often (keeps proxies from "
        "closing it) and checks that its session is still valid.",
    )
    notification_stream_buffer: int = Field(
        256,
        ge=1,
        description="Notifications one stream may have waiting for a slow client; past it the stream "
        "ends (the client resumes with `Last-Event-ID`).",
    )
    seed_demo_on_empty: bool = Field(
        True, description="`bazaar dev` loads demo data when the database has no users."
    )

    def jwt_secret_value(self) -> str:
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if self.environment == "production":
            raise RuntimeError("JWT_SECRET must be set in production")
        path = self.var_dir / "jwt-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    @model_validator(mode="after")
    def _smtp_needs_a_host(self) -> "Settings":
        if self.email_backend == "smtp" and not self.smtp_host:
            raise ValueError("EMAIL_BACKEND=smtp needs SMTP_HOST")
        return self

    def mail_backend(self) -> Literal["log", "smtp"]:
        if self.email_backend is not None:
            return self.email_backend
        return "smtp" if self.smtp_host else "log"

    def mail_log_path(self) -> Path:
        return self.var_dir / "notifications" / "mail.log"

    def local_files_dir(self) -> Path:
        return self.files_dir if self.files_dir is not None else self.var_dir / "files"

    def encryption_key_value(self) -> bytes:
        if self.encryption_key is not None:
            return self.encryption_key.get_secret_value().encode()
        if self.environment == "production":
            raise RuntimeError("ENCRYPTION_KEY must be set in production")
        path = self.var_dir / "encryption-key"
        if not path.exists():
            from cryptography.fernet import Fernet

            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(Fernet.generate_key())
            path.chmod(0o600)
        return path.read_bytes().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
