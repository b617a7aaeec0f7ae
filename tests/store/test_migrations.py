"""Alembic: upgrade, downgrade and 'autogenerate finds no diff', on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.store.base import create_engine
from app.store.migrate import current_revision, downgrade, head_revision, upgrade
from app.store.models import Base, compared_here


def _diff(connection: Connection) -> list[object]:
    opts = {"compare_type": True, "include_object": compared_here(connection.dialect.name)}
    context = MigrationContext.configure(connection, opts=opts)
    return list(compare_metadata(context, Base.metadata))


async def _read_diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_diff)
    finally:
        await engine.dispose()


async def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return await current_revision(engine)
    finally:
        await engine.dispose()


def test_autogenerate_finds_no_diff_after_upgrade(database_url: str) -> None:
    assert asyncio.run(_read_diff(database_url)) == []


def test_downgrade_to_base_then_upgrade_round_trips(database_url: str) -> None:
    downgrade(database_url, "base")
    assert asyncio.run(_revision(database_url)) is None
    upgrade(database_url)
    assert asyncio.run(_revision(database_url)) == head_revision()
    assert asyncio.run(_read_diff(database_url)) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_upgrade_never_hands_a_deleted_rules_id_to_a_new_rule(database_url: str) -> None:
    """Before 0003 SQLite reused the largest rule id once its rule was deleted; after it, a
    new rule gets an id above every id a rule ever had, deleted ones included."""
    downgrade(database_url, "0002")
    path = database_url.split(":///", 1)[1]
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM rule_revisions")
        db.execute("DELETE FROM rules")
        for rule_id in (1, 2):  # rule 2 was the newest, then deleted: only its history stays
            db.execute(
                "INSERT INTO rule_revisions (rule_id, rule_name, revision, change, changed_at) "
                "VALUES (?, ?, 1, 'created', '2026-11-27 10:00:00')",
                (rule_id, f"rule-{rule_id}"),
            )
        db.execute(
            "INSERT INTO rules (id, name, priority, mode, action, reason, document, revision, "
            "created_at, updated_at) VALUES (1, 'rule-1', 1, 'enforce', 'deny', 'r', '{}', 1, "
            "'2026-11-27 10:00:00', '2026-11-27 10:00:00')"
        )
    upgrade(database_url)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO rules (name, priority, mode, action, reason, document, revision, "
            "created_at, updated_at) VALUES ('rule-3', 1, 'enforce', 'deny', 'r', '{}', 1, "
            "'2026-11-27 11:00:00', '2026-11-27 11:00:00')"
        )
        db.execute("DELETE FROM rules WHERE name = 'rule-3'")
        new_id = db.execute(
            "INSERT INTO rules (name, priority, mode, action, reason, document, revision, "
            "created_at, updated_at) VALUES ('rule-4', 1, 'enforce', 'deny', 'r', '{}', 1, "
            "'2026-11-27 11:00:00', '2026-11-27 11:00:00') RETURNING id"
        ).fetchone()[0]
    assert new_id == 4


_LZ4_SUPPORTED = (
    "SELECT coalesce(bool_or('lz4' = ANY(enumvals)), false) FROM pg_settings "
    "WHERE name = 'default_toast_compression'"
)
_DECISION_COMPRESSION = (
    "SELECT attcompression::text FROM pg_attribute "
    "WHERE attrelid = 'verifications'::regclass AND attname = 'decision'"
)


async def _scalar(url: str, sql: str) -> object:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(text(sql))
    finally:
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_decision_column_is_lz4_from_0008_and_default_below(database_url: str) -> None:
    """0008 sets lz4 on the decision column (where the server has it); its downgrade puts the
    server's default back; upgrading again sets it again."""
    if not asyncio.run(_scalar(database_url, _LZ4_SUPPORTED)):
        pytest.skip("this PostgreSQL has no lz4")
    assert asyncio.run(_scalar(database_url, _DECISION_COMPRESSION)) == "l"
    downgrade(database_url, "0007")
    assert asyncio.run(_scalar(database_url, _DECISION_COMPRESSION)) == ""
    upgrade(database_url)
    assert asyncio.run(_scalar(database_url, _DECISION_COMPRESSION)) == "l"
