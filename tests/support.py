"""Test helpers: sign callbacks exactly as Sinch does, and read what the app stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from httpx import AsyncClient, Response

from app.sinch.signature import callback_headers

TEST_APP_KEY = "5F5C418A-0F91-4BBC-8234-A9BF5EDDAD97"
TEST_APP_SECRET = "JViE5vDor0Sw3WllZka15Q=="


class SinchSender:
    """Posts events the way Sinch does: raw JSON body, signed headers."""

    def __init__(self, client: AsyncClient, *, path: str) -> None:
        self.client = client
        self.path = path

    def headers(self, body: bytes, *, now: datetime | None = None, **over: str) -> dict[str, str]:
        return callback_headers(
            key=over.pop("key", TEST_APP_KEY),
            secret_b64=over.pop("secret", TEST_APP_SECRET),
            body=body,
            path=over.pop("signed_path", self.path),
            now=now or datetime.now(UTC),
            **over,
        )

    async def post(self, event: dict[str, Any] | bytes, **over: Any) -> Response:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        headers = self.headers(body, **over)
        return await self.client.post(self.path, content=body, headers=headers)
