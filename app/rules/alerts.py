"""Alert rules and notification channels: part of the policy document, validated on load.

An alert watches one metric per key over a window and fires above (or, for conversion,
below) a threshold, absolute or relative to the key's own history; it may notify channels
and contain the key it fired for.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from app.rules.conditions import Frozen
from app.rules.durations import format_duration, parse_duration

# denied_spend: the price of the denied attempts (what the rules saved), in the price currency.
Metric = Literal["attempts", "denied", "denied_spend", "spend", "unverified", "conversion"]
AlertKey = Literal["global", "country", "range", "number", "application"]
ChannelKind = Literal["webhook", "slack"]
_NAME = r"^[a-z0-9][a-z0-9_.-]*$"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
REDACTED = "whsec_********"
# A key converting below this over `dead_over` is dead: nobody real verifies there.
DEAD_CONVERSION = 0.2
_SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{16,}={0,2}$")


def _duration(value: Any) -> str:
    if not isinstance(value, str | int):
        raise ValueError("a duration is a string like '10m' or a number of seconds")
    return format_duration(parse_duration(value))


class Channel(Frozen):
    """Where notifications go: a signed webhook or a Slack incoming webhook."""

    name: str = Field(min_length=1, max_length=100, pattern=_NAME)
    kind: ChannelKind
    url: str = Field(pattern=r"^https?://\S+$", max_length=2000)
    # Webhooks only: `whsec_<base64>`; a missing one is generated when the policy is stored.
    secret: str | None = None
    console_url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=2000)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is None or value == REDACTED or _SECRET.match(value):
            return value
        raise ValueError("a webhook secret is written whsec_<base64 of at least 12 bytes>")


class Contain(Frozen):
    """Block the key an alert fired for: `for` first, then each `escalate` step for repeats
    within a day; `review` holds it as proposed until an admin approves it."""

    for_: str = Field(alias="for")
    escalate: list[str] = Field(default_factory=list, max_length=10)
    review: bool = False
    # With `review`: contain at once all the same when the key was dead over this period
    # (see Alert.dead_over: no real users there to hurt); proposed otherwise.
    active_if_dead_over: str | None = None

    @field_validator("for_", mode="before")
    @classmethod
    def _for(cls, value: Any) -> str:
        return _duration(value)

    @field_validator("active_if_dead_over", mode="before")
    @classmethod
    def _dead(cls, value: Any) -> str | None:
        return None if value is None else _duration(value)

    @model_validator(mode="after")
    def _dead_needs_review(self) -> Contain:
        if self.active_if_dead_over is not None and not self.review:
            raise ValueError("active_if_dead_over qualifies `review: true`")
        return self

    @field_validator("escalate", mode="before")
    @classmethod
    def _escalate(cls, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise ValueError("escalate is a list of durations")
        return [_duration(item) for item in value]

    def seconds(self, repeat: int) -> int:
        """The block's length for the `repeat`th containment of a key within a day (0: first)."""
        steps = [self.for_, *self.escalate]
        return parse_duration(steps[min(repeat, len(steps) - 1)])


class Relative(Frozen):
    """A threshold of `factor` times the key's average for the same hour over the last `days`."""

    factor: float = Field(gt=0)
    days: int = Field(default=7, ge=1, le=28)


class Alert(Frozen):
    """One alert: `metric` per `key` over `window`, compared with its threshold."""

    name: str = Field(min_length=1, max_length=100, pattern=_NAME)
    description: str = ""
    metric: Metric
    key: AlertKey = "global"
    digits: int | None = Field(default=None, ge=1, le=15)
    window: str
    above: float | None = Field(default=None, ge=0)
    below: float | None = Field(default=None, ge=0, le=1)
    min_attempts: int = Field(default=0, ge=0)
    # Only attempts priced at least this (costly destinations), in the price currency.
    min_price: float | None = Field(default=None, ge=0)
    # Only keys dead over this period (up to now): fewer than DEAD_CONVERSION of their allowed
    # attempts verified, none at all included (pumping gets ~1 % verified, real users ~85 %).
    dead_over: str | None = None
    relative: Relative | None = None
    cooldown: str = "30m"
    notify: list[str] = Field(default_factory=list)
    contain: Contain | None = None

    @model_validator(mode="before")
    @classmethod
    def _range_digits(cls, data: Any) -> Any:
        """A range without `digits` is the first 8 digits, as in the starter policy's rules."""
        if isinstance(data, dict) and data.get("key") == "range" and data.get("digits") is None:
            return {**data, "digits": 8}
        return data

    @field_validator("window", "cooldown", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> str:
        return _duration(value)

    @field_validator("dead_over", mode="before")
    @classmethod
    def _dead_over(cls, value: Any) -> str | None:
        return None if value is None else _duration(value)

    @model_validator(mode="after")
    def _threshold(self) -> Alert:
        if self.metric == "conversion":
            if self.below is None or self.above is not None or self.relative is not None:
                raise ValueError("a conversion alert takes `below` (and `min_attempts`)")
        elif self.below is not None:
            raise ValueError(f"a {self.metric} alert takes `above` (or `relative`), not `below`")
        elif self.above is None and self.relative is None:
            raise ValueError(f"a {self.metric} alert needs `above` or `relative`")
        if self.key != "range" and self.digits is not None:
            raise ValueError("`digits` is for range alerts")
        if self.contain is not None and self.key == "global":
            raise ValueError("a global alert cannot contain: name a country, range or number")
        if self.dead_over is not None and self.key == "global":
            raise ValueError("`dead_over` is for an alert per country, range or number")
        return self

    @property
    def window_seconds(self) -> int:
        return parse_duration(self.window)

    @property
    def cooldown_seconds(self) -> int:
        return parse_duration(self.cooldown)

    @property
    def dead_seconds(self) -> int | None:
        return None if self.dead_over is None else parse_duration(self.dead_over)


def check_alerting(
    channels: list[Channel], alerts: list[Alert], lists: set[str], never_contain: list[str]
) -> None:
    """Names unique, every `notify` a known channel; ValueError naming the first problem."""
    for what, names in (
        ("channel", [c.name for c in channels]),
        ("alert", [a.name for a in alerts]),
    ):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"duplicate {what} name {name!r}")
            seen.add(name)
    known = {channel.name for channel in channels}
    for alert in alerts:
        for name in alert.notify:
            if name not in known:
                raise ValueError(f"alert {alert.name!r} notifies unknown channel {name!r}")
    for name in never_contain:
        if name not in lists and name != "allowlist":
            raise ValueError(f"never_contain names unknown list {name!r}")
