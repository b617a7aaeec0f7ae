"""Webhook channel secrets on import: a redacted or missing one keeps the stored secret of the
channel with that name, or gets a new one (`whsec_` and 24 random bytes in base64)."""

from __future__ import annotations

import base64
import secrets

from app.rules.alerts import REDACTED, Channel
from app.rules.model import Policy


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def keep_secrets(policy: Policy, current: Policy) -> Policy:
    """`policy` with every webhook channel's secret filled in."""
    stored = {c.name: c.secret for c in current.channels if c.secret and c.secret != REDACTED}
    channels = [_filled(channel, stored.get(channel.name)) for channel in policy.channels]
    if channels == policy.channels:
        return policy
    return policy.model_copy(update={"channels": channels})


def _filled(channel: Channel, stored: str | None) -> Channel:
    if channel.kind != "webhook" or (channel.secret and channel.secret != REDACTED):
        return channel
    return channel.model_copy(update={"secret": stored or new_secret()})
