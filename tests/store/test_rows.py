"""Typed rows name real columns: a column added to a table shows up here, not in production."""

from __future__ import annotations

from dataclasses import fields

from app.store.audit_rows import AuditLogEntry, StoredCallback, Verification
from app.store.models import AuditLogRow, CallbackRow, VerificationMatchRow, VerificationRow
from app.store.rows import CallbackClaim, DeliveryRow, MatchRow, RequestRow, ResultRow, columns


def _columns(model: type) -> set[str]:
    return {column.name for column in model.__table__.c}  # type: ignore[attr-defined]


def test_rows_read_whole_tables() -> None:
    assert {f.name for f in fields(Verification)} == _columns(VerificationRow)
    assert {f.name for f in fields(StoredCallback)} == _columns(CallbackRow)


def test_rows_written_name_every_column_but_the_generated_id() -> None:
    assert set(columns(CallbackClaim)) == _columns(CallbackRow) - {"id"}
    assert set(columns(MatchRow)) == _columns(VerificationMatchRow) - {"id"}
    assert {f.name for f in fields(AuditLogEntry)} == _columns(AuditLogRow) - {"id"}


def test_verification_writes_name_its_columns() -> None:
    for row in (RequestRow, ResultRow, DeliveryRow):
        assert set(columns(row)) <= _columns(VerificationRow), row
