"""Blocking a whole country from the console: its calling code as an expiring entry of the
`country-blocklist` prefix list, denied by the rule of the same name (both created on first
use, recorded like any policy change). Countries sharing a calling code (+1) share a block."""

from __future__ import annotations

from datetime import datetime

import phonenumbers
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import Unprocessable
from app.rules.model import ListEntry, NamedList, Rule
from app.services.policy import lists, rules
from app.services.tokens import Principal
from app.store import lists as list_store
from app.store import policy as policy_store

BLOCKLIST = "country-blocklist"
RULE = Rule.model_validate(
    {
        "name": BLOCKLIST,
        "description": "Calling codes of countries blocked from the console, until they expire.",
        "priority": 2,
        "action": "deny",
        "reason": "country_blocked",
        "when": {"in_list": BLOCKLIST},
    }
)


def calling_code(country: str) -> str:
    """`SE` → `+46`; 422 for a code that is no country."""
    code = phonenumbers.country_code_for_region(country.upper())
    if not code:
        raise Unprocessable(
            f"{country!r} is not a country code",
            errors=[{"loc": "country", "msg": "not an ISO 3166 country code"}],
        )
    return f"+{code}"


async def block_country(
    conn: AsyncConnection,
    *,
    country: str,
    until: datetime,
    note: str,
    by: Principal,
    now: datetime,
) -> str:
    """Deny every number of `country` until `until`; return the calling code blocked."""
    prefix = calling_code(country)
    await _ensure_blocklist(conn, by=by, now=now)
    entry = ListEntry(value=prefix, note=note or f"{country.upper()} blocked", expires_at=until)
    await lists.add_entries(conn, name=BLOCKLIST, entries=[entry], by=by, now=now)
    return prefix


async def _ensure_blocklist(conn: AsyncConnection, *, by: Principal, now: datetime) -> None:
    if await list_store.list_row(conn, BLOCKLIST) is None:
        named = NamedList(name=BLOCKLIST, kind="prefix", description=RULE.description)
        await lists.create_list(conn, named=named, by=by, now=now)
    if not any(rule.name == BLOCKLIST for rule in await policy_store.rule_rows(conn)):
        await rules.create_rule(conn, rule=RULE, by=by, now=now)
