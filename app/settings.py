"""All configuration: one Settings object from VERIFYGUARD_* environment variables or `.env`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.rules.model import check_timezone
from app.sinch.signature import decode_secret

Action = Literal["allow", "deny"]
OutageMode = Literal["spool", "fallback"]


class AnswerDefaults(BaseModel):
    """Per-method settings sent with every allow, unless a rule overrides them."""

    sms_code_type: Literal["Numeric", "Alpha", "Alphanumeric"] | None = "Numeric"
    sms_expiry: str | None = Field(default="00:05:00", pattern=r"^\d{2}:\d{2}:\d{2}$")
    sms_code_length: int | None = Field(default=None, ge=4, le=10)
    flashcall_dial_timeout: int | None = Field(default=None, ge=5, le=120)
    flashcall_interception_timeout: int | None = Field(default=None, ge=5, le=120)
    flashcall_cli: str | None = None
    callout_locale: str | None = "en-US"
    whatsapp_code_type: Literal["Numeric", "Alpha", "Alphanumeric"] | None = None


class AlertSettings(BaseModel):
    """Alert evaluation, containment propagation and notification delivery."""

    enabled: bool = True  # off: this process neither evaluates nor delivers (it still contains)
    evaluate_seconds: float = Field(default=5.0, gt=0, le=10)
    containment_poll_seconds: float = Field(default=0.5, gt=0, le=1)
    delivery_seconds: float = Field(default=1.0, gt=0, le=60)
    lease_seconds: float = Field(default=30.0, ge=1, le=600)
    notification_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=10, ge=1, le=100)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VERIFYGUARD_",
        env_file=".env",
        env_nested_delimiter="__",
        extra="ignore",
    )

    environment: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite+aiosqlite:///./verifyguard.db"
    # The request events' connections per worker (PostgreSQL); transactions get a quarter
    # (at least 4). 8 answered more, with a shorter tail, than 20 did with PostgreSQL on the
    # same two cores (make bench): fewer backends contend for the same hot rows and WAL.
    database_pool_size: int = Field(default=8, ge=1, le=200)
    redis_url: str | None = None
    redis_prefix: str = Field(default="vg:", min_length=1, max_length=64)
    sinch_apps: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    dev_app_file: Path = Path(".verifyguard-dev-app.json")
    callback_path: str = "/sinch/verification/events"
    callback_signed_path: str | None = None
    timestamp_tolerance_seconds: int = Field(default=900, ge=0)
    store_rejected_callbacks: bool = True
    default_action: Action = "allow"
    fallback_action: Action = "deny"
    decision_deadline_ms: int = Field(default=400, ge=10, le=10_000)
    # A result or receipt waits this long for the database before it is spooled instead
    # (nothing waits on its answer but Sinch's HTTP client).
    store_deadline_ms: int = Field(default=2000, ge=10, le=30_000)
    answers: AnswerDefaults = Field(default_factory=AnswerDefaults)
    timezone: str = "UTC"
    counter_bucket_seconds: int = Field(default=60, ge=1, le=3600)
    counter_retention_seconds: int = Field(default=8 * 86400, ge=3600)
    baseline_refresh_seconds: float = Field(default=30.0, ge=1, le=3600)
    bootstrap_token: SecretStr | None = None
    mask_numbers_for_auditors: bool = True
    log_json: bool | None = None
    log_level: str = "INFO"
    database_connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    outage_mode: OutageMode = "spool"
    spool_dir: Path = Path("spool")
    outage_probe_interval_ms: int = Field(default=1000, ge=20, le=60_000)
    retention_days: int | None = Field(default=None, ge=1)
    anonymize_after_days: int | None = Field(default=None, ge=1)
    anonymize_key: SecretStr | None = None
    retention_interval_seconds: int = Field(default=3600, ge=1)
    stats_rollup_interval_seconds: int = Field(default=300, ge=0)  # 0: only when queried
    # The console's cookie key; without one each process picks a random key (sessions end
    # when it restarts; several workers need a shared one).
    console_secret: SecretStr | None = None
    console_session_hours: float = Field(default=8, gt=0, le=24 * 30)
    # Set by `verifyguard serve` in development: the code of its one-time sign-in link.
    console_sign_in_code: SecretStr | None = None
    # Templates compiled and the console's reads run once, in the background after start-up.
    console_warm_up: bool = True
    # An overview slower than this to compute is served from memory (app/web/overview_cache.py),
    # recomputed in the background once older than console_overview_fresh_seconds.
    console_overview_slow_ms: float = Field(default=250, ge=0)
    console_overview_fresh_seconds: float = Field(default=15, gt=0)
    alerts: AlertSettings = Field(default_factory=lambda: AlertSettings())

    @field_validator("sinch_apps", mode="before")
    @classmethod
    def _parse_apps(cls, value: object) -> object:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        return value

    @field_validator("sinch_apps")
    @classmethod
    def _check_secrets(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for key, secret in value.items():
            try:
                decode_secret(secret.get_secret_value())
            except ValueError:
                raise ValueError(f"secret of Sinch application {key!r} is not base64") from None
        return value

    @field_validator("callback_path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        if self.environment == "production" and not self.sinch_apps:
            raise ValueError("VERIFYGUARD_SINCH_APPS must name at least one app in production")
        return self

    @model_validator(mode="after")
    def _check_anonymize(self) -> Settings:
        if self.anonymize_after_days is not None and self.anonymize_key is None:
            raise ValueError("VERIFYGUARD_ANONYMIZE_AFTER_DAYS needs VERIFYGUARD_ANONYMIZE_KEY")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def counter_prefix(self) -> str:
        """The Redis counters' keys' prefix (and the policy version's key's)."""
        return f"{self.redis_prefix}c:"

    @property
    def signed_path(self) -> str:
        """The path Sinch signed; differs from the served path behind a rewriting proxy."""
        return self.callback_signed_path or self.callback_path

    @property
    def timestamp_tolerance(self) -> timedelta | None:
        seconds = self.timestamp_tolerance_seconds
        return timedelta(seconds=seconds) if seconds else None

    @property
    def json_logs(self) -> bool:
        return self.log_json if self.log_json is not None else self.environment != "development"

    def app_secrets(self) -> dict[str, bytes]:
        return {k: decode_secret(v.get_secret_value()) for k, v in self.sinch_apps.items()}
