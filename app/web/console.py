"""The console's long-lived parts, built once by create_app: cookie codec, templates, the
development sign-in link, and which optional features (alerts, backtests) the app serves."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.templating import Jinja2Templates

from app.settings import Settings
from app.web import format as fmt
from app.web.overview_cache import OverviewCache
from app.web.polls import PollLog
from app.web.session import SessionCodec

HERE = Path(__file__).parent


@dataclass
class SignInLink:
    """The one-time code `verifyguard serve` prints in development; spent on first use."""

    code: str | None
    spent: bool = False

    def redeem(self, code: str) -> bool:
        if self.code is None or self.spent or not secrets.compare_digest(code, self.code):
            return False
        self.spent = True
        return True


@dataclass
class Console:
    settings: Settings
    codec: SessionCodec
    templates: Jinja2Templates
    link: SignInLink
    features: dict[str, bool] = field(default_factory=dict)
    polls: PollLog = field(default_factory=PollLog)
    warmed: asyncio.Event = field(default_factory=asyncio.Event)  # set when warm.py is done
    overview: OverviewCache = field(default_factory=OverviewCache)


def build_console(settings: Settings) -> Console:
    secret = settings.console_secret
    key = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
    code = settings.console_sign_in_code
    link_code = code.get_secret_value() if code and settings.environment == "development" else None
    codec = SessionCodec(key, max_age=int(settings.console_session_hours * 3600))
    cache = OverviewCache(
        slow=settings.console_overview_slow_ms / 1000,
        fresh_for=settings.console_overview_fresh_seconds,
    )
    return Console(settings, codec, templates(), SignInLink(link_code), overview=cache)


def templates() -> Jinja2Templates:
    env = Jinja2Templates(directory=HERE / "templates")
    env.env.filters.update(fmt.FILTERS)
    env.env.globals["NAV"] = NAV
    return env


NAV = ("Overview", "Decisions", "Rules", "Lists", "Alerts", "Backtest")
