"""Where the simulated Sinch posts its events, and how: raw JSON, signed like Sinch signs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlsplit

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
    def at(cls, url: str, *, path: str, signed_path: str, key: str, secret: str) -> Self:
        """`url` is VerifyGuard's base URL, or its callback URL (as pasted into Sinch's
        dashboard: it ends with `path`)."""
        url = url.strip().rstrip("/")
        if not urlsplit(url).path.endswith(path.rstrip("/")):
            url += path
        return cls(url, signed_path, key, secret)

    @property
    def base_url(self) -> str:
        """Scheme, host and port (where /healthz is)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

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


def refusal(target: CallbackTarget, response: httpx.Response) -> str | None:
    """Why every event would fail, when the answer says so (404: wrong URL; 401: wrong key or
    secret); None for any other answer."""
    if response.status_code == 404:
        return (
            f"404 from {target.url}: no VerifyGuard callback there. Pass --url the base URL"
            " (http://host:8000) or the callback URL as configured in Sinch's dashboard"
            " (ending in the callback path, /sinch/verification/events by default)."
        )
    if response.status_code == 401:
        return (
            f"401 from {target.url} ({_problem_code(response)}): the callback refused the"
            f" signature of application {target.key!r}. Check --key and --secret against"
            " VERIFYGUARD_SINCH_APPS on the server."
        )
    return None


def _problem_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", "unauthorized"))
    except (ValueError, AttributeError):
        return "unauthorized"
