"""Where the simulated Sinch posts its events, and how: raw JSON, signed like Sinch signs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import httpx

from app.sinch.signature import callback_headers


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """A VerifyGuard callback: full URL, the path Sinch signs, and the Sinch application."""

    url: str
    signed_path: str
    key: str
    secret: str

    @classmethod
    def at(cls, base_url: str, *, path: str, signed_path: str, key: str, secret: str) -> Self:
        return cls(base_url.rstrip("/") + path, signed_path, key, secret)

    def headers(self, body: bytes) -> dict[str, str]:
        """The headers Sinch would send with `body` now, signed for this application."""
        return callback_headers(
            key=self.key,
            secret_b64=self.secret,
            body=body,
            path=self.signed_path,
            now=datetime.now(UTC),
        )

    async def post(self, client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
        body = json.dumps(event, separators=(",", ":")).encode()
        return await client.post(self.url, content=body, headers=self.headers(body))

    async def try_post(
        self, client: httpx.AsyncClient, event: dict[str, Any]
    ) -> httpx.Response | None:
        """The answer, or None when the callback could not be reached."""
        try:
            return await self.post(client, event)
        except httpx.HTTPError:
            return None


def action_of(response: httpx.Response) -> str | None:
    """ "allow" or "deny" from a 200 answer; None for anything Sinch would call invalid."""
    if response.status_code != 200:
        return None
    try:
        action = response.json().get("action")
    except (ValueError, AttributeError):
        return None
    return action if action in ("allow", "deny") else None
