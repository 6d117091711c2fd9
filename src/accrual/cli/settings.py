"""Configuration, from `ACCRUAL_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACCRUAL_", extra="ignore")

    database_url: str | None = None
    """PostgreSQL to use. Unset: an embedded server with its data under `data_dir`."""
    data_dir: Path = Path(".accrual")
    """Where the embedded server keeps its data."""
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    worker_interval_seconds: float = 1.0
    idempotency_retention_hours: int = 24
    webhook_timeout_seconds: float = 15.0
    """How long a webhook receiver has to answer."""
    relay_concurrency: int = 16
    """Webhook requests a relay sends at once."""
    db_pool_size: int = 10
