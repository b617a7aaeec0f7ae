"""Editing a rule as YAML on the console: parse and validate the text, build the candidate
policy a dry run decides with, and show a revision as a diff of its YAML."""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic import ValidationError

from app.errors import AppError, validation_errors
from app.rules.model import Policy, Rule
from app.services.policy.io import dump_document, load_document
from app.sinch.events import VerificationRequestEvent
from app.store.policy_rows import RuleRevision

SAMPLE_EVENT = {
    "id": "console-dry-run",
    "event": "VerificationRequestEvent",
    "method": "sms",
    "identity": {"type": "number", "endpoint": "+46701234567"},
    "price": {"amount": 0.05, "currencyId": "EUR"},
}


def as_yaml(document: dict[str, Any] | None) -> str:
    return "" if document is None else dump_document(document, "yaml")


def sample_event_text() -> str:
    return json.dumps(SAMPLE_EVENT, indent=2)


def parse_rule(text: str) -> tuple[Rule | None, list[str]]:
    """The rule the YAML describes, or the reasons it is not one."""
    try:
        document = load_document(text, "yaml")
        return Rule.model_validate(document), []
    except AppError as exc:
        return None, [exc.detail]
    except ValidationError as exc:
        return None, [f"{e['loc']}: {e['msg']}" for e in validation_errors(list(exc.errors()))]


def parse_event(text: str) -> tuple[VerificationRequestEvent | None, list[str]]:
    try:
        return VerificationRequestEvent.model_validate(json.loads(text)), []
    except json.JSONDecodeError as exc:
        return None, [f"the sample event is not JSON: {exc}"]
    except ValidationError as exc:
        return None, [f"event.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]


def with_rule(policy: Policy, rule: Rule, *, replacing: str) -> Policy:
    """The live policy with one rule replaced by its edited version."""
    document = policy.model_dump(mode="json", exclude_none=True)
    rules = [r for r in document["rules"] if r["name"] != replacing]
    rules.append(rule.model_dump(mode="json", exclude_none=True))
    return Policy.model_validate({**document, "rules": rules})


def revision_diff(revision: RuleRevision) -> str:
    before = as_yaml(revision.before).splitlines()
    after = as_yaml(revision.after).splitlines()
    lines = difflib.unified_diff(
        before, after, f"revision {revision.revision - 1}", f"revision {revision.revision}"
    )
    return "\n".join(line.rstrip("\n") for line in lines)
