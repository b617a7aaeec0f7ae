"""The starter policy installed on first run: sensible anti-pumping defaults, all editable.

Written as the document an admin would export, so it doubles as an example of the format.
"""

from __future__ import annotations

import copy
from typing import Any

from app.rules.model import Policy

BLOCKED_TYPES = ["premium_rate", "shared_cost", "uan", "pager", "voicemail"]

STARTER: dict[str, Any] = {
    "default_action": "allow",
    "lists": [
        {"name": "allowlist", "kind": "number", "description": "Always allowed (VIP, QA)."},
        {"name": "blocklist", "kind": "number", "description": "Always denied."},
    ],
    "rules": [
        {
            "name": "allowlist",
            "description": "Numbers on the allowlist are allowed before any other rule.",
            "priority": 0,
            "action": "allow",
            "reason": "allowlisted",
            "when": {"in_list": "allowlist"},
        },
        {
            "name": "blocklist",
            "description": "Numbers on the blocklist are denied.",
            "priority": 1,
            "action": "deny",
            "reason": "blocklisted",
            "when": {"in_list": "blocklist"},
        },
        {
            "name": "invalid-number",
            "description": "libphonenumber says the number cannot exist.",
            "priority": 10,
            "action": "deny",
            "reason": "invalid_number",
            "when": {"field": "valid", "op": "eq", "value": False},
        },
        {
            "name": "blocked-number-types",
            "description": "Premium-rate, shared-cost, UAN, pager and voicemail numbers: "
            "no real user verifies with them; they are where toll fraud pays out.",
            "priority": 20,
            "action": "deny",
            "reason": "number_type_blocked",
            "when": {"field": "number_type", "op": "in", "value": BLOCKED_TYPES},
        },
        {
            "name": "price-ceiling",
            "description": "Sinch quotes a price above 0.50 (in the account currency).",
            "priority": 30,
            "action": "deny",
            "reason": "price_ceiling",
            "when": {"field": "price_amount", "op": "gt", "value": 0.5},
        },
        {
            "name": "number-unverified",
            "description": "More than 3 attempts for one number within an hour that have not "
            "verified. A real user verifies, and a verified attempt stops counting; a number "
            "asked for code after code (SMS bombing, a paid line) never does.",
            "priority": 40,
            "action": "deny",
            "reason": "number_velocity",
            "when": {
                "velocity": {"key": "number", "window": "1h", "max": 3, "measure": "unverified"}
            },
        },
        {
            "name": "range-unverified",
            "description": "Allowed attempts not verified within an hour to one block of 1,000 "
            "numbers (the number without its last 3 digits, the same size in every numbering "
            "plan) above max(20, the block's verified attempts in 14 days). A busy operator "
            "block whose users verify (~85 %) earns room as they do, and one converting at "
            "50 % or better is never held; pumping walks blocks where nobody verifies, which "
            "keep the floor. Denied attempts cannot verify, so they do not count (they would "
            "hold a busy block shut). It also needs the block's conversion in the hour below "
            "20 %: the verified baseline is refreshed every 30 s, and a block that has just "
            "become busy converts at 40 % or more once its first results are in.",
            "priority": 50,
            "action": "deny",
            "reason": "range_velocity",
            "when": {
                "all": [
                    {
                        "velocity": {
                            "key": "range",
                            "drop_last": 3,
                            "window": "1h",
                            "measure": "unverified",
                            "only_allowed": True,
                            "limit": {"floor": 20, "factor": 1, "verified_in": "14d"},
                        }
                    },
                    {
                        "conversion": {
                            "key": "range",
                            "drop_last": 3,
                            "window": "1h",
                            "min_attempts": 20,
                            "below": 0.2,
                        }
                    },
                ]
            },
        },
        {
            "name": "high-cost-range-unverified",
            "description": "Where an attempt costs 0.20 or more: the same per block, with a "
            "floor of 3. High-cost mobile ranges are what pumping sells.",
            "priority": 51,
            "action": "deny",
            "reason": "range_velocity",
            "when": {
                "all": [
                    {"field": "price_amount", "op": "ge", "value": 0.2},
                    {
                        "velocity": {
                            "key": "range",
                            "drop_last": 3,
                            "window": "1h",
                            "measure": "unverified",
                            "only_allowed": True,
                            "limit": {"floor": 3, "factor": 1, "verified_in": "14d"},
                        }
                    },
                ]
            },
        },
        {
            "name": "new-destination",
            "description": "A country where nothing has verified today: more than 2.00 (in "
            "the account currency) allowed within an hour. Until its first success a new "
            "destination gets a small budget in money, not a minute: real users' first codes "
            "come back within seconds to a minute, which a busy country reaches at a few "
            "cents an attempt, while pumping a costly destination spends it in a few "
            "attempts. Judged from the first attempt on (no min_history).",
            "priority": 53,
            "action": "deny",
            "reason": "new_destination",
            "when": {
                "all": [
                    {"verified": {"key": "country", "window": "1d", "at_most": 0}},
                    {
                        "velocity": {
                            "key": "country",
                            "window": "1h",
                            "max": 2,
                            "measure": "spend",
                            "only_allowed": True,
                        }
                    },
                ]
            },
        },
        {
            "name": "high-cost-new-destination",
            "description": "Where an attempt costs 0.20 or more, to a country where nothing "
            "has verified today: one allowed attempt not verified within an hour at a time. "
            "Slow pumping of a small, expensive country gets one attempt through, not a "
            "minute's worth; a real user's success opens the next rule's two.",
            "priority": 54,
            "action": "deny",
            "reason": "new_destination",
            "when": {
                "all": [
                    {"field": "price_amount", "op": "ge", "value": 0.2},
                    {"verified": {"key": "country", "window": "1d", "at_most": 0}},
                    {
                        "velocity": {
                            "key": "country",
                            "window": "1h",
                            "max": 1,
                            "measure": "unverified",
                            "only_allowed": True,
                        }
                    },
                ]
            },
        },
        {
            "name": "dead-destination",
            "description": "A country where at most 2 attempts verified in the last day: more "
            "than 20 allowed attempts within an hour that have not verified. Real users "
            "verify within a minute, so traffic that never does is pumping, however thinly "
            "it is spread over numbers and blocks (slow and distributed pumping); pumping "
            "gets ~1 % verified, so 2 do not make a country alive. Not judged before the "
            "country's first attempt of the day is a minute old (min_history): a busy "
            "country's first results take that long. Denied attempts cannot verify, so they "
            "do not count: a small country that starts verifying is let through again.",
            "priority": 55,
            "action": "deny",
            "reason": "dead_destination",
            "when": {
                "all": [
                    {
                        "verified": {
                            "key": "country",
                            "window": "1d",
                            "at_most": 2,
                            "min_history": "1m",
                        }
                    },
                    {
                        "velocity": {
                            "key": "country",
                            "window": "1h",
                            "max": 20,
                            "measure": "unverified",
                            "only_allowed": True,
                        }
                    },
                ]
            },
        },
        {
            "name": "high-cost-dead-destination",
            "description": "Where an attempt costs 0.20 or more: the same after 2 allowed "
            "unverified attempts, judged from the first attempt on (no min_history; before "
            "the first success rule 54 allows one). Slow pumping of a small, expensive "
            "country is stopped at its second attempt; its denied attempts cannot verify, so "
            "it stays dead, and an attempt or two an hour still get through to let real "
            "users show.",
            "priority": 56,
            "action": "deny",
            "reason": "dead_destination",
            "when": {
                "all": [
                    {"field": "price_amount", "op": "ge", "value": 0.2},
                    {"verified": {"key": "country", "window": "1d", "at_most": 2}},
                    {
                        "velocity": {
                            "key": "country",
                            "window": "1h",
                            "max": 2,
                            "measure": "unverified",
                            "only_allowed": True,
                        }
                    },
                ]
            },
        },
        {
            "name": "high-cost-country-unverified",
            "description": "Where an attempt costs 0.20 or more: allowed attempts not "
            "verified within an hour to one country above max(20, its verified attempts in "
            "14 days). Pumping that gets a few attempts verified is still held to 20 an "
            "hour; a country whose real users verify earns room as they do. Denied attempts "
            "do not count: one hammered number must not close its whole country.",
            "priority": 57,
            "action": "deny",
            "reason": "country_velocity",
            "when": {
                "all": [
                    {"field": "price_amount", "op": "ge", "value": 0.2},
                    {
                        "velocity": {
                            "key": "country",
                            "window": "1h",
                            "measure": "unverified",
                            "only_allowed": True,
                            "limit": {"floor": 20, "factor": 1, "verified_in": "14d"},
                        }
                    },
                ]
            },
        },
        {
            "name": "country-conversion",
            "description": "Shadow: in a country with 50+ attempts in 24h, fewer than 20% "
            "verified. Watch its would-have matches before enforcing it.",
            "priority": 60,
            "mode": "shadow",
            "action": "deny",
            "reason": "low_conversion",
            "when": {
                "conversion": {
                    "key": "country",
                    "window": "24h",
                    "min_attempts": 50,
                    "below": 0.2,
                }
            },
        },
    ],
}


def starter_policy() -> Policy:
    """A valid policy: allowlist (0), blocklist (1), invalid numbers (10), blocked number
    types (20), price ceiling 0.50 (30), 3 unverified/h per number (40), unverified/h per
    1,000-number block above max(20, verified in 14d) while it converts below 20 % (50,
    allowed ones; floor 3 where an attempt costs 0.20 or more, 51), 2.00 allowed/h to a
    country with nothing verified today (53; 1 allowed unverified where an attempt costs 0.20
    or more, 54), 20 allowed unverified/h to a country with at most 2 verified in a day and a
    minute of history (55; 2, from the first attempt, where an attempt costs 0.20 or more,
    56), allowed unverified/h to a country above max(20, verified in 14d)
    where an attempt costs 0.20 or more (57), and a shadow per-country conversion breaker
    (60)."""
    return Policy.model_validate(STARTER)


def starter_document() -> dict[str, Any]:
    """The starter policy as an exported document (what `verifyguard rules starter` prints)."""
    return copy.deepcopy(STARTER)
