"""The starter policy installed on first run: sensible anti-pumping defaults, all editable.

Written as the document an admin would export, so it doubles as an example of the format.
"""

from __future__ import annotations

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
            "name": "number-velocity",
            "description": "More than 5 attempts for one number within an hour.",
            "priority": 40,
            "action": "deny",
            "reason": "number_velocity",
            "when": {"velocity": {"key": "number", "window": "1h", "max": 5}},
        },
        {
            "name": "range-velocity",
            "description": "More than 20 allowed attempts within an hour for numbers sharing "
            "their first 8 digits: a block of 1,000 numbers for 11-digit numbers (SE, US), "
            "10,000 for 12-digit ones (GB, DE mobiles). Pumping walks such blocks. Only "
            "allowed attempts count, so one hammered (and denied) number cannot fill its "
            "block and lock out its neighbours.",
            "priority": 50,
            "action": "deny",
            "reason": "range_velocity",
            "when": {
                "velocity": {
                    "key": "range",
                    "digits": 8,
                    "window": "1h",
                    "max": 20,
                    "only_allowed": True,
                }
            },
        },
        {
            "name": "high-cost-range-velocity",
            "description": "Where an attempt costs 0.20 or more, more than 5 attempts within "
            "an hour for one 8-digit block: high-cost mobile ranges are what pumping sells.",
            "priority": 51,
            "action": "deny",
            "reason": "range_velocity",
            "when": {
                "all": [
                    {"field": "price_amount", "op": "ge", "value": 0.2},
                    {"velocity": {"key": "range", "digits": 8, "window": "1h", "max": 5}},
                ]
            },
        },
        {
            "name": "high-cost-country-velocity",
            "description": "Where an attempt costs 0.20 or more, more than 30 attempts within "
            "an hour to one country: slow pumping spreads over random numbers of a small, "
            "expensive country, under any per-number or per-block limit.",
            "priority": 52,
            "action": "deny",
            "reason": "country_velocity",
            "when": {
                "all": [
                    {"field": "price_amount", "op": "ge", "value": 0.2},
                    {"velocity": {"key": "country", "window": "1h", "max": 30}},
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
    types (20), price ceiling 0.50 (30), 5/h per number (40), 20 allowed/h per 8-digit range
    (50); where an attempt costs 0.20 or more, 5/h per range (51) and 30/h per country (52);
    and a shadow per-country conversion breaker (60). Anything else is allowed."""
    return Policy.model_validate(STARTER)
