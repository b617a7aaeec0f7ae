"""What intake passes around: one delivery as received, and the reply to send back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.errors import AppError


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST to the callback path, as received."""

    body: bytes
    content_type: str | None
    app_key: str | None
    received_at: datetime
    signature: str = "valid"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: dict[str, Any] | None = None
    error: AppError | None = None
    duplicate: bool = False
    encoded: bytes | None = None  # `body` as sent, when encoded once for many (a shed answer)
