"""Jinja filters: how numbers, money, rates, changes and times read on the console."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

NONE = "\u2013"  # an en dash: no value
MINUS = "\u2212"


def number(value: float | int | None) -> str:
    if value is None:
        return NONE
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def money(spend: Mapping[str, float] | None) -> str:
    """Spend per currency, e.g. `EUR 12.30 + USD 1.00`; nothing spent reads `0`."""
    if not spend:
        return "0"
    return " + ".join(f"{cur} {amount:,.2f}" for cur, amount in sorted(spend.items()))


def percent(rate: float | None) -> str:
    return NONE if rate is None else f"{rate * 100:.1f} %"


def change(value: float | None) -> str:
    """A change against the previous period: `+12 %`, `-3 %` (a minus sign), `new`, a dash."""
    if value is None:
        return NONE
    if value == float("inf"):
        return "new"
    sign = "+" if value > 0 else MINUS if value < 0 else "±"
    return f"{sign}{abs(value) * 100:.0f} %"


def when(value: datetime | str | None) -> str:
    if value is None:
        return NONE
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


FILTERS: dict[str, Callable[..., Any]] = {
    "number": number,
    "money": money,
    "percent": percent,
    "change": change,
    "when": when,
}
