"""Policy as code: export the live policy as one JSON/YAML document, validate one, import it.

An import that changes nothing writes nothing: no revision, no version bump.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import BadRequest, Unprocessable, validation_errors
from app.rules.model import Action, NamedList, Policy
from app.services.policy.admin import (
    alerting_document,
    lock_policy,
    replace_policy,
    rule_document,
)
from app.services.policy.cache import live_policy
from app.services.policy.secrets import keep_secrets
from app.services.tokens import Principal
from app.store import policy as store

Format = Literal["json", "yaml"]


@dataclass(frozen=True, slots=True)
class PolicyDiff:
    """What importing a policy changes, by rule name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    lists_changed: bool = False
    default_action_changed: bool = False
    alerting_changed: bool = False

    @property
    def changed(self) -> bool:
        return bool(
            self.created
            or self.updated
            or self.deleted
            or self.lists_changed
            or self.default_action_changed
            or self.alerting_changed
        )


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import changed (or, dry run, would change), and the policy version after it."""

    version: int
    dry_run: bool
    diff: PolicyDiff


def export_document(policy: Policy, *, redact: bool = False) -> dict[str, Any]:
    """The policy as an admin edits it: no ids, revisions or empty defaults; `redact` hides
    the channels' secrets (an import of the redacted document keeps the stored ones)."""
    return {
        "default_action": policy.default_action,
        "lists": [named.model_dump(mode="json", exclude_defaults=True) for named in policy.lists],
        "rules": [rule_document(rule) for rule in policy.rules],
        **(alerting_document(policy, redact=redact) or {}),
    }


def dump_document(document: Any, fmt: Format) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_document(text: str, fmt: Format) -> Any:
    """Parse JSON or YAML text; 400 when it is neither."""
    try:
        return json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise BadRequest(
            f"the document is not valid {fmt.upper()}: {exc}", code="malformed_document"
        ) from None


def parse_policy(document: Any) -> Policy:
    """A validated Policy; 422 naming each bad field (`rules.2.when.velocity.max`)."""
    if not isinstance(document, dict):
        raise Unprocessable(
            "a policy is a mapping with rules, lists and default_action",
            errors=[{"loc": "", "msg": "expected a mapping"}],
        )
    try:
        policy = Policy.model_validate(document)
    except ValidationError as exc:
        errors = [{**e, "loc": e["loc"] or "rules"} for e in validation_errors(list(exc.errors()))]
        raise Unprocessable.listing(errors) from None
    _check_unique_entries(policy.lists)
    return policy


async def export_policy(
    conn: AsyncConnection, *, default_action: Action, redact: bool = False
) -> dict[str, Any]:
    return export_document(await live_policy(conn, default_action=default_action), redact=redact)


async def import_policy(
    conn: AsyncConnection,
    *,
    document: Any,
    by: Principal,
    now: datetime,
    default_action: Action,
    dry_run: bool = False,
) -> ImportReport:
    """Replace the live policy atomically; report what changed and the resulting version."""
    policy = parse_policy(document)
    await lock_policy(conn)
    current = await live_policy(conn, default_action=default_action)
    policy = keep_secrets(policy, current)
    diff = policy_diff(current, policy)
    version = await store.policy_version(conn)
    if diff.changed and not dry_run:
        version = await replace_policy(
            conn, policy=policy, now=now, actor=by.name, token_id=by.token_id
        )
    return ImportReport(version, dry_run, diff)


def policy_diff(current: Policy, new: Policy) -> PolicyDiff:
    before = {rule.name: rule_document(rule) for rule in current.rules}
    after = {rule.name: rule_document(rule) for rule in new.rules}
    return PolicyDiff(
        created=[name for name in after if name not in before],
        updated=[name for name in after if name in before and before[name] != after[name]],
        deleted=[name for name in before if name not in after],
        lists_changed=_lists_key(current) != _lists_key(new),
        default_action_changed=current.default_action != new.default_action,
        alerting_changed=alerting_document(current) != alerting_document(new),
    )


def _lists_key(policy: Policy) -> dict[str, tuple[str, str, list[tuple[str, str, str]]]]:
    """Lists compared regardless of their order and of the order of their entries."""
    return {
        named.name: (
            named.kind,
            named.description,
            sorted(
                (e.value, e.note, e.expires_at.isoformat() if e.expires_at else "")
                for e in named.entries
            ),
        )
        for named in policy.lists
    }


def _check_unique_entries(named_lists: list[NamedList]) -> None:
    errors = []
    for i, named in enumerate(named_lists):
        seen: set[str] = set()
        for j, entry in enumerate(named.entries):
            if entry.value in seen:
                errors.append({"loc": f"lists.{i}.entries.{j}.value", "msg": "duplicate value"})
            seen.add(entry.value)
    if errors:
        raise Unprocessable.listing(errors)
