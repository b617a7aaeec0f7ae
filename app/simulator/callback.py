"""Where the simulated Sinch posts its events, and how: raw JSON, signed like Sinch signs."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, Self
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

    def signed(self, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """`event` as Sinch posts it: the compact JSON body and its signed headers."""
        body = json.dumps(event, separators=(",", ":")).encode()
        return body, self.headers(body)

    async def post(self, client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
        body, headers = self.signed(event)
        return await client.post(self.url, content=body, headers=headers)

    async def try_post(
        self, client: httpx.AsyncClient, event: dict[str, Any]
    ) -> httpx.Response | None:
        """The answer, or None when the callback could not be reached."""
        try:
            return await self.post(client, event)
        except httpx.HTTPError:
            return None


class Answer(Protocol):
    """What the simulator reads of a callback's answer (an httpx.Response is one)."""

    @property
    def status_code(self) -> int: ...

    def json(self) -> Any: ...


class Sender(Protocol):
    """Posts one event to the callback; None when it could not be reached."""

    async def __call__(self, event: dict[str, Any]) -> Answer | None: ...


class HttpxSender:
    """A Sender over an httpx client (tests drive the app in process through one), at most
    `concurrency` events in flight."""

    def __init__(
        self, client: httpx.AsyncClient, target: CallbackTarget, *, concurrency: int = 32
    ) -> None:
        self._client, self._target = client, target
        self._slots = asyncio.Semaphore(concurrency)

    async def __call__(self, event: dict[str, Any]) -> Answer | None:
        async with self._slots:
            return await self._target.try_post(self._client, event)


def action_of(response: Answer) -> str | None:
    """ "allow" or "deny" from a 200 answer; None for anything Sinch would call invalid."""
    if response.status_code != 200:
        return None
    try:
        action = response.json().get("action")
    except (ValueError, AttributeError):
        return None
    return action if action in ("allow", "deny") else None


def refusal(target: CallbackTarget, response: Answer) -> str | None:
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


def _problem_code(response: Answer) -> str:
    try:
        return str(response.json().get("code", "unauthorized"))
    except (ValueError, AttributeError):
        return "unauthorized"
