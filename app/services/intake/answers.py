"""Turn a decision into the JSON Sinch expects: action plus the method object of the event."""

from __future__ import annotations

import secrets
import string
from typing import Any

from app.rules.engine import Decision
from app.rules.model import AnswerOverrides
from app.settings import AnswerDefaults
from app.sinch.answers import (
    CalloutAnswer,
    FlashCallAnswer,
    RequestAnswer,
    SmsAnswer,
    Speech,
    WhatsAppAnswer,
)

_ALPHABETS = {
    "Numeric": string.digits,
    "Alpha": string.ascii_uppercase,
    "Alphanumeric": string.ascii_uppercase + string.digits,
}


def build_answer(*, method: str, decision: Decision, defaults: AnswerDefaults) -> dict[str, Any]:
    """Deny carries nothing else; allow carries the configured defaults and rule overrides."""
    if decision.action == "deny":
        return RequestAnswer(action="deny").wire()
    settings = _merge(defaults, decision.answer)
    answer = RequestAnswer(action="allow", **_method_object(method, settings))
    return answer.wire()


def _merge(defaults: AnswerDefaults, overrides: AnswerOverrides | None) -> dict[str, Any]:
    merged = defaults.model_dump()
    if overrides is not None:
        merged.update(overrides.model_dump(exclude_none=True))
    return merged


def _method_object(method: str, s: dict[str, Any]) -> dict[str, Any]:
    if method == "sms":
        code = _code(s["sms_code_length"], s["sms_code_type"])
        return {"sms": SmsAnswer(code=code, code_type=s["sms_code_type"], expiry=s["sms_expiry"])}
    if method == "flashcall":
        return {
            "flash_call": FlashCallAnswer(
                cli=s["flashcall_cli"],
                dial_timeout=s["flashcall_dial_timeout"],
                interception_timeout=s["flashcall_interception_timeout"],
            )
        }
    if method == "callout":
        locale = s["callout_locale"]
        return {"callout": CalloutAnswer(speech=Speech(locale=locale) if locale else None)}
    if method == "whatsapp":
        return {"whatsapp": WhatsAppAnswer(code_type=s["whatsapp_code_type"])}
    return {}


def _code(length: int | None, code_type: str | None) -> str | None:
    """Sinch has no code-length setting: a length means we choose the OTP ourselves."""
    if not length:
        return None
    alphabet = _ALPHABETS.get(code_type or "Numeric", string.digits)
    return "".join(secrets.choice(alphabet) for _ in range(length))
