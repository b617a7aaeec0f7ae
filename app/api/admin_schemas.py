"""Request and response bodies of the /admin API; rules and lists reuse the policy models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, model_validator

from app.rules.conditions import INT32_MAX, Frozen
from app.rules.decision import DecidedBy, RuleMatch, TraceEntry
from app.rules.model import Action, ListEntry, Mode, NamedList, Policy, Rule
from app.services.policy.io import ImportReport
from app.sinch.events import VerificationRequestEvent
from app.store.policy_rows import StoredRule


class RuleCreate(Rule):
    """A new rule. `id` and `revision` are assigned by the server (ignored if sent)."""


class RuleUpdate(Rule):
    """A rule's whole new document. A `revision`, if sent, must be the current one (409)."""


class RulePatch(Frozen):
    """Change some fields only: `mode: off` disables a rule, `enforce` or `shadow` enables it."""

    mode: Mode | None = None
    priority: int | None = Field(None, ge=-INT32_MAX, le=INT32_MAX)
    description: str | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> RulePatch:
        if not self.changes():
            raise ValueError("send at least one of mode, priority, description")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class RuleRead(Rule):
    """A stored rule: its document, with its id, revision and who changed it last."""

    id: int
    created_at: datetime
    updated_at: datetime
    updated_by: str | None

    @classmethod
    def of(cls, row: StoredRule) -> RuleRead:
        return cls.model_validate(
            {
                **row.document,
                "id": row.id,
                "revision": row.revision,
                "created_at": row.created_at,
                "updated_at": row.updated_at,
                "updated_by": row.updated_by,
            }
        )


class RevisionRead(BaseModel):
    """One immutable change of a rule: who, when, and the document before and after."""

    model_config = ConfigDict(from_attributes=True)

    rule_id: int
    rule_name: str
    revision: int
    change: str
    actor: str | None
    token_id: int | None
    changed_at: datetime
    before: dict[str, JsonValue] | None
    after: dict[str, JsonValue] | None


class ListCreate(NamedList):
    """A new named list, optionally with its first entries."""


class _ListHead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    kind: str
    description: str
    created_at: datetime


class ListSummary(_ListHead):
    entries: int
    active_entries: int


class EntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    value: str
    note: str
    expires_at: datetime | None
    active: bool
    created_at: datetime
    created_by: str | None


class ListRead(_ListHead):
    entries: list[EntryRead]


class EntriesAdd(Frozen):
    """Entries to add; `note` and `expires_at` here fill in whichever an entry leaves unset."""

    entries: list[ListEntry] = Field(min_length=1)
    note: str | None = None
    expires_at: AwareDatetime | None = None

    def resolved(self) -> list[ListEntry]:
        defaults = {"note": self.note, "expires_at": self.expires_at}
        return [
            entry.model_copy(
                update={
                    k: v
                    for k, v in defaults.items()
                    if v is not None and k not in entry.model_fields_set
                }
            )
            for entry in self.entries
        ]


class EntriesRemove(Frozen):
    values: list[str] = Field(min_length=1)


class EntriesAdded(BaseModel):
    added: int
    updated: int


class EntriesRemoved(BaseModel):
    removed: int


class EvaluateRequest(BaseModel):
    """A request event to decide; `policy` is a candidate to try instead of the live one."""

    event: VerificationRequestEvent
    policy: Policy | None = None
    application: str | None = Field(default=None, description="Sinch application key")
    at: AwareDatetime | None = Field(default=None, description="Decide as of this time")


class EvaluateResult(BaseModel):
    action: Action
    reason: str
    mode: DecidedBy
    rule: str | None
    rule_id: int | None
    rule_revision: int | None
    shadow: list[RuleMatch]
    trace: list[TraceEntry]
    answer: dict[str, JsonValue]
    aggregates: dict[str, float]
    policy_version: int | str | None
    facts: dict[str, JsonValue]
    candidate: bool


class ImportResult(BaseModel):
    """What a policy import changed (or, with dry_run, would change)."""

    version: int
    changed: bool
    dry_run: bool
    created: list[str]
    updated: list[str]
    deleted: list[str]
    lists_changed: bool
    default_action_changed: bool
    alerting_changed: bool = False

    @classmethod
    def of(cls, report: ImportReport) -> ImportResult:
        diff = report.diff
        return cls(
            version=report.version,
            changed=diff.changed,
            dry_run=report.dry_run,
            created=diff.created,
            updated=diff.updated,
            deleted=diff.deleted,
            lists_changed=diff.lists_changed,
            default_action_changed=diff.default_action_changed,
            alerting_changed=diff.alerting_changed,
        )
