"""Infrastructure settings, read once from the environment and `.env`.

Every name here is part of traza's external interface (see README, "Configuration").
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from limits import parse as parse_rate
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(RuntimeError):
    """An environment setting is invalid; the message names it in one line."""


class Settings(BaseSettings):
    """All of traza's infrastructure knobs (DSN, secrets, pools, timeouts)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    traza_home: Path = Field(default=Path(".traza"), alias="TRAZA_HOME")
    traza_config_dir: Path | None = Field(default=None, alias="TRAZA_CONFIG_DIR")
    traza_admin_key: SecretStr | None = Field(default=None, alias="TRAZA_ADMIN_KEY")
    traza_dev: bool = Field(default=False, alias="TRAZA_DEV")
    # Trained models (judgment, guardrail reply classifier) are cached here by version;
    # default `$TRAZA_HOME/models`. Safe to delete: a missing model is rebuilt in seconds.
    traza_model_cache: Path | None = Field(default=None, alias="TRAZA_MODEL_CACHE")

    whatsapp_app_secret: SecretStr | None = Field(default=None, alias="WHATSAPP_APP_SECRET")
    whatsapp_verify_token: SecretStr | None = Field(default=None, alias="WHATSAPP_VERIFY_TOKEN")
    whatsapp_access_token: SecretStr | None = Field(default=None, alias="WHATSAPP_ACCESS_TOKEN")
    whatsapp_api_base: str = Field(
        default="https://graph.facebook.com/v21.0", alias="WHATSAPP_API_BASE"
    )

    # E-mail (SMTP) and SMS (an HTTP provider): the recruiting agent's other channels.
    traza_smtp_host: str | None = Field(default=None, alias="TRAZA_SMTP_HOST")
    traza_smtp_port: int = Field(default=587, ge=1, le=65535, alias="TRAZA_SMTP_PORT")
    traza_smtp_user: str | None = Field(default=None, alias="TRAZA_SMTP_USER")
    traza_smtp_password: SecretStr | None = Field(default=None, alias="TRAZA_SMTP_PASSWORD")
    traza_smtp_starttls: bool = Field(default=True, alias="TRAZA_SMTP_STARTTLS")
    traza_email_from: str | None = Field(default=None, alias="TRAZA_EMAIL_FROM")
    traza_sms_url: str | None = Field(default=None, alias="TRAZA_SMS_URL")
    traza_sms_token: SecretStr | None = Field(default=None, alias="TRAZA_SMS_TOKEN")

    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    traza_llm_model: str | None = Field(default=None, alias="TRAZA_LLM_MODEL")
    traza_llm_timeout: float = Field(default=8.0, gt=0, le=120, alias="TRAZA_LLM_TIMEOUT")

    # How long the first message of a burst waits for the rest before its turn runs.
    traza_coalesce_seconds: float = Field(default=1.0, ge=0, le=60, alias="TRAZA_COALESCE_SECONDS")
    traza_worker_concurrency: int = Field(default=8, ge=1, le=256, alias="TRAZA_WORKER_CONCURRENCY")
    traza_db_pool_size: int = Field(default=20, ge=1, le=200, alias="TRAZA_DB_POOL_SIZE")
    # Server-side prepared statements (psycopg prepares a statement after its 5th use on a
    # connection): PostgreSQL then skips parsing and planning. Off only behind a pooler
    # that cannot carry them (PgBouncer in transaction mode before 1.21).
    traza_db_prepared_statements: bool = Field(default=True, alias="TRAZA_DB_PREPARED_STATEMENTS")
    traza_send_max_attempts: int = Field(default=6, ge=1, le=50, alias="TRAZA_SEND_MAX_ATTEMPTS")
    traza_stalled_seconds: float = Field(default=30, ge=2, le=3600, alias="TRAZA_STALLED_SECONDS")
    # An inbound message unprocessed this long is a backlog: the dashboard warns,
    # `traza worker --check` fails (the gauge is `traza_oldest_unprocessed_seconds`).
    traza_backlog_warn_seconds: float = Field(
        default=60, gt=0, le=86400, alias="TRAZA_BACKLOG_WARN_SECONDS"
    )
    traza_bot_name: str = Field(default="traza", min_length=1, alias="TRAZA_BOT_NAME")
    # Bearer token `GET /metrics` requires; unset: /metrics is open (keep it off the internet).
    traza_metrics_token: SecretStr | None = Field(default=None, alias="TRAZA_METRICS_TOKEN")

    # `text` (one line per record) or `json` (one object per line); masked either way.
    traza_log_format: Literal["text", "json"] = Field(default="text", alias="TRAZA_LOG_FORMAT")
    # A dashboard session ends after this long without a request, and at the latest this
    # long after login.
    traza_session_idle_minutes: float = Field(
        default=60, gt=0, le=7 * 24 * 60, alias="TRAZA_SESSION_IDLE_MINUTES"
    )
    traza_session_max_hours: float = Field(
        default=12, gt=0, le=30 * 24, alias="TRAZA_SESSION_MAX_HOURS"
    )
    # Failed logins and API authentications allowed per client IP and per key prefix in a
    # moving window (`limits` notation: "20/minute", "100 per hour"); then 429.
    traza_auth_failures_per_client: str = Field(
        default="50/minute", alias="TRAZA_AUTH_FAILURES_PER_CLIENT"
    )
    traza_auth_failures_per_key: str = Field(
        default="10/minute", alias="TRAZA_AUTH_FAILURES_PER_KEY"
    )

    def prepare_threshold(self) -> int | None:
        """The `prepare_threshold` of every psycopg pool traza opens (None: never)."""
        return 5 if self.traza_db_prepared_statements else None

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            raise ValueError("must be a postgresql:// URL (traza runs on PostgreSQL only)")
        return value

    @field_validator("traza_auth_failures_per_client", "traza_auth_failures_per_key")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        try:
            parse_rate(value)
        except ValueError:
            raise ValueError("must be a rate such as 20/minute or 100 per hour") from None
        return value

    @field_validator("whatsapp_api_base")
    @classmethod
    def _check_api_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("traza_sms_url")
    @classmethod
    def _check_sms_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("traza_email_from")
    @classmethod
    def _check_email_from(cls, value: str | None) -> str | None:
        if not value:
            return None
        if "@" not in value:
            raise ValueError("must be an e-mail address, e.g. Talento <talento@example.com>")
        return value

    @property
    def email_enabled(self) -> bool:
        """E-mail can be sent: an SMTP host and a sender address are configured."""
        return bool(self.traza_smtp_host and self.traza_email_from)

    @property
    def sms_enabled(self) -> bool:
        """SMS can be sent: the provider's URL is configured."""
        return bool(self.traza_sms_url)

    @property
    def llm_enabled(self) -> bool:
        """A model is configured: classification, replies and the judge use it."""
        return bool(self.traza_llm_model and (self.openai_api_key or self.openai_base_url))

    @property
    def dev_secret_path(self) -> Path:
        """Where the local dev-mode webhook secret lives (used by `traza simulate`)."""
        return self.traza_home / "dev-webhook-secret"

    @property
    def model_cache(self) -> Path:
        """Where trained models are cached by version."""
        return self.traza_model_cache or self.traza_home / "models"

    @property
    def dev_admin_key_path(self) -> Path:
        """Where the local dev-mode admin key lives (printed by `traza serve --dev`)."""
        return self.traza_home / "dev-admin-key"

    def admin_key(self) -> str | None:
        """The bootstrap admin key: `TRAZA_ADMIN_KEY`, or the dev-mode one."""
        if self.traza_admin_key is not None:
            return self.traza_admin_key.get_secret_value() or None
        if self.traza_dev and self.dev_admin_key_path.exists():
            return self.dev_admin_key_path.read_text().strip() or None
        return None

    def webhook_secret(self) -> str | None:
        """The secret that signs webhook posts: Meta's, or the dev-mode one."""
        if self.whatsapp_app_secret is not None:
            return self.whatsapp_app_secret.get_secret_value()
        if self.traza_dev and self.dev_secret_path.exists():
            return self.dev_secret_path.read_text().strip()
        return None


def load_settings() -> Settings:
    """Read settings, turning a validation error into one line that names the setting."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        alias = Settings.model_fields[name].alias if name in Settings.model_fields else name
        raise SettingsError(f"invalid setting {alias or name}: {first['msg']}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (tests clear the cache with `get_settings.cache_clear()`)."""
    return load_settings()
