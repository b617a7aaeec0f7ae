"""Typed rows of the live policy as `app.store.policy` reads and writes them.

Rules, their revisions and the named lists with their entries. A rule's `document` and a
revision's `before`/`after` are the rule's JSON document (as `rule_document` gives it) and
stay mappings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRule:
    """A `rules` row: the rule's document, with the columns indexed out of it."""

    id: int
    name: str
    priority: int
    mode: str
    action: str
    reason: str
    document: dict[str, Any]
    revision: int
    created_at: datetime
    updated_at: datetime
    updated_by: str | None

    def loaded(self) -> dict[str, Any]:
        """The rule's document with its id and revision, as the Policy model reads a rule."""
        return {**self.document, "id": self.id, "revision": self.revision}


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleRevision:
    """A `rule_revisions` row (without its own id): one change of a rule, from what to what."""

    rule_id: int
    rule_name: str
    revision: int
    change: str
    actor: str | None
    token_id: int | None
    changed_at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyEntry:
    """An entry of a named list, as the policy holds it."""

    value: str
    note: str = ""
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyList:
    """A named list with its entries, as the policy holds it (read, or written on import)."""

    name: str
    kind: str
    description: str = ""
    entries: list[PolicyEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedPolicy:
    """Everything needed to build the Policy model: its version, default, rules and lists."""

    version: int
    default_action: str | None
    rules: list[StoredRule]
    lists: list[PolicyList]
    alerting: dict[str, Any] | None = None
