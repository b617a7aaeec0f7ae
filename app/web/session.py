"""Console sessions: a signed, expiring cookie naming the token it was opened with, and the
CSRF token derived from it. No server-side table: revoking the token ends its sessions."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "vg_session"
MAX_AGE_SECONDS = 8 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    """Who signed in: a stored token (`token_id`), the bootstrap token or a development link
    (`kind`), with the fingerprint that must still match; `nonce` keys the CSRF token."""

    kind: str  # "token" | "bootstrap" | "link"
    token_id: int | None
    fingerprint: str
    nonce: str


class SessionCodec:
    """Signs and reads session cookies, and derives each session's CSRF token."""

    def __init__(self, secret: bytes, *, max_age: int = MAX_AGE_SECONDS) -> None:
        self._secret = secret
        self._serializer = URLSafeTimedSerializer(secret, salt="verifyguard.console.session")
        self.max_age = max_age

    def open(self, *, kind: str, token_id: int | None, fingerprint: str) -> tuple[Session, str]:
        session = Session(kind, token_id, fingerprint, secrets.token_urlsafe(16))
        data = [session.kind, session.token_id, session.fingerprint, session.nonce]
        return session, self._serializer.dumps(data)

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            kind, token_id, fingerprint, nonce = self._serializer.loads(
                cookie, max_age=self.max_age
            )
        except (BadSignature, ValueError, TypeError):
            return None
        return Session(str(kind), token_id, str(fingerprint), str(nonce))

    def csrf_token(self, session: Session) -> str:
        mac = hmac.new(self._secret, b"csrf:" + session.nonce.encode(), hashlib.sha256)
        return mac.hexdigest()

    def csrf_valid(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session), token or "")

    def fingerprint(self, value: str) -> str:
        """A short MAC of a secret (the bootstrap token, the sign-in link's code)."""
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()[:32]
