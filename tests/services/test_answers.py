"""The answer to a request event: built once per method, defaults and overrides, yet each
caller gets its own dictionaries, a changed default shows at once, and a code of ours is
drawn afresh for every answer."""

from __future__ import annotations

from app.rules.decision import Decision
from app.rules.model import AnswerOverrides
from app.services.intake.answers import build_answer
from app.settings import AnswerDefaults

ALLOW = Decision(action="allow", reason="default", mode="default")


def test_an_answer_changed_by_its_caller_leaves_the_next_one_as_it_was() -> None:
    defaults = AnswerDefaults()
    first = build_answer(method="callout", decision=ALLOW, defaults=defaults)
    assert first == {"action": "allow", "callout": {"speech": {"locale": "en-US"}}}
    first["callout"]["speech"]["locale"] = "xx"
    first["action"] = "deny"
    again = build_answer(method="callout", decision=ALLOW, defaults=defaults)
    assert again == {"action": "allow", "callout": {"speech": {"locale": "en-US"}}}


def test_a_default_changed_in_place_changes_the_next_answer() -> None:
    defaults = AnswerDefaults()
    assert build_answer(method="sms", decision=ALLOW, defaults=defaults)["sms"] == {
        "codeType": "Numeric",
        "expiry": "00:05:00",
    }
    defaults.sms_expiry = "00:02:00"
    assert build_answer(method="sms", decision=ALLOW, defaults=defaults)["sms"] == {
        "codeType": "Numeric",
        "expiry": "00:02:00",
    }


def test_overrides_of_a_rule_apply_and_others_do_not_leak() -> None:
    defaults = AnswerDefaults()
    overridden = ALLOW.model_copy(update={"answer": AnswerOverrides(flashcall_dial_timeout=30)})
    flash = build_answer(method="flashcall", decision=overridden, defaults=defaults)
    assert flash == {"action": "allow", "flashCall": {"dialTimeout": 30}}
    assert build_answer(method="flashcall", decision=ALLOW, defaults=defaults) == {
        "action": "allow"
    }


def test_a_code_of_ours_is_drawn_for_every_answer() -> None:
    defaults = AnswerDefaults(sms_code_length=10, sms_code_type="Alphanumeric")
    codes = {build_answer(method="sms", decision=ALLOW, defaults=defaults)["sms"]["code"]}
    for _ in range(20):
        codes.add(build_answer(method="sms", decision=ALLOW, defaults=defaults)["sms"]["code"])
    assert len(codes) > 1 and all(len(code) == 10 for code in codes)
