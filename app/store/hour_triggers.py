"""The triggers that keep `counter_hours` in step with `counters` (migration 0009): checked
before serving and by `/readyz`, put back by `verifyguard db repair-triggers`.

An hour row holds what windows read: per measure (counter_model.READS) the sum of its
columns, in the measure's first column (`allowed` holds allowed + pending, and
`allowed_spend_micros` likewise; `pending` and `pending_spend_micros` stay 0). So a change
that moves pending into allowed (an allowed attempt's settle by a version that still held
attempts pending) changes no hour, and the triggers skip it: no hour row is written when
every measure's change is 0.

Without them every minute row written goes uncounted in its hour, and every window longer
than an hour silently under-counts (a table restored or recreated outside the migrations,
a trigger dropped or disabled by hand). The statements here are the migration's, to the
character: the check compares what the database holds with them, so a trigger or function
changed by hand is found as well as a missing one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store.counter_model import READS, VALUE_COLUMNS

_COLUMNS = VALUE_COLUMNS  # migration 0009 lists the same columns, in this order
_NAMES = ", ".join(_COLUMNS)
_ADD = ", ".join(f"{c} = counter_hours.{c} + excluded.{c}" for c in _COLUMNS)
FOLDED = {columns[0]: columns for columns in READS.values()}
"""Per hour column, the minute columns it sums (none: it stays 0)."""


def hour_values(term: Callable[[str], str]) -> list[str]:
    """Each hour column's value, from `term(minute column)`."""
    return [" + ".join(term(c) for c in FOLDED.get(column, ())) or "0" for column in _COLUMNS]


def _changed(values: list[str]) -> str:
    """Whether any measure changes (the columns that stay 0 aside)."""
    return " OR ".join(f"{v} <> 0" for v in values if v != "0")


_SUMS = hour_values(lambda c: f"sum({c})")
REBUILD = (
    "DELETE FROM counter_hours",
    f"INSERT INTO counter_hours (key, hour, {_NAMES}) "
    f"SELECT key, bucket - bucket % 3600, {', '.join(_SUMS)} "
    f"FROM counters GROUP BY key, bucket - bucket % 3600 HAVING {_changed(_SUMS)}",
)

# SQLite: row triggers; sqlite_master keeps each one's CREATE statement as written.


def _sqlite_trigger(name: str, event: str, term: Callable[[str], str]) -> str:
    values = hour_values(term)
    return (
        f"CREATE TRIGGER {name} AFTER {event} ON counters WHEN {_changed(values)} BEGIN "
        f"INSERT INTO counter_hours (key, hour, {_NAMES}) "
        f"VALUES (NEW.key, NEW.bucket - NEW.bucket % 3600, {', '.join(values)}) "
        f"ON CONFLICT (key, hour) DO UPDATE SET {_ADD}; END"
    )


SQLITE_TRIGGERS = {
    "counters_to_hours_insert": _sqlite_trigger(
        "counters_to_hours_insert", "INSERT", lambda c: f"NEW.{c}"
    ),
    "counters_to_hours_update": _sqlite_trigger(
        "counters_to_hours_update", "UPDATE", lambda c: f"NEW.{c} - OLD.{c}"
    ),
}

# PostgreSQL: statement triggers over transition tables, each calling its function.


def _pg_body(source: str, term: Callable[[str], str]) -> str:
    """One grouped upsert of the statement's rows into their hours (in key order, as the
    counts lock their rows), leaving out the hours whose measures do not change."""
    values = hour_values(lambda c: f"sum({term(c)})")
    return f"""
BEGIN
    INSERT INTO counter_hours (key, hour, {_NAMES})
    SELECT n.key, n.bucket - n.bucket % 3600, {", ".join(values)}
    FROM {source}
    GROUP BY 1, 2 HAVING {_changed(values)} ORDER BY 1, 2
    ON CONFLICT (key, hour) DO UPDATE SET {_ADD};
    RETURN NULL;
END
"""


PG_FUNCTIONS = {
    "counters_inserted_to_hours": _pg_body("inserted n", lambda c: f"n.{c}"),
    "counters_updated_to_hours": _pg_body(
        "updated n JOIN replaced o ON o.key = n.key AND o.bucket = n.bucket",
        lambda c: f"n.{c} - o.{c}",
    ),
}
PG_TRIGGERS = {
    "counters_inserted_to_hours": "CREATE TRIGGER counters_inserted_to_hours AFTER INSERT ON "
    "counters REFERENCING NEW TABLE AS inserted "
    "FOR EACH STATEMENT EXECUTE FUNCTION counters_inserted_to_hours()",
    "counters_updated_to_hours": "CREATE TRIGGER counters_updated_to_hours AFTER UPDATE ON "
    "counters REFERENCING OLD TABLE AS replaced NEW TABLE AS updated "
    "FOR EACH STATEMENT EXECUTE FUNCTION counters_updated_to_hours()",
}
_PG_READ = text(
    "SELECT t.tgname, t.tgenabled::text, pg_get_triggerdef(t.oid) FROM pg_trigger t "
    "WHERE t.tgrelid = 'counters'::regclass AND NOT t.tgisinternal"
)
_PG_FUNCTION_READ = text(
    "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    "WHERE n.oid = (SELECT relnamespace FROM pg_class WHERE oid = 'counters'::regclass) "
    "AND p.proname = ANY(:names)"
)
_SQLITE_READ = text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
_ENABLED = {"O", "A"}  # fires in ordinary sessions ('D' disabled, 'R' replica only)


async def problems(conn: AsyncConnection) -> list[str]:
    """What is wrong with the triggers, one phrase each ([] when all is as migrated)."""
    if conn.dialect.name == "postgresql":
        return await _pg_problems(conn)
    found = {name: sql for name, sql in (await conn.execute(_SQLITE_READ)).tuples()}
    return _compare(SQLITE_TRIGGERS, found, "trigger")


async def _pg_problems(conn: AsyncConnection) -> list[str]:
    triggers: dict[str, str] = {}
    disabled = []
    for name, enabled, definition in (await conn.execute(_PG_READ)).tuples():
        triggers[name] = re.sub(r" ON \S+ ", " ON counters ", definition, count=1)
        if name in PG_TRIGGERS and enabled not in _ENABLED:
            disabled.append(f"trigger {name} disabled")
    names = {"names": list(PG_FUNCTIONS)}
    functions = dict((await conn.execute(_PG_FUNCTION_READ, names)).tuples().all())
    return [
        *_compare(PG_FUNCTIONS, functions, "function"),
        *_compare(PG_TRIGGERS, triggers, "trigger"),
        *disabled,
    ]


def _compare(expected: dict[str, str], found: dict[str, str], kind: str) -> list[str]:
    missing = [f"{kind} {name} missing" for name in expected if name not in found]
    changed = [
        f"{kind} {name} not as migrated"
        for name, source in expected.items()
        if name in found and found[name] != source
    ]
    return missing + changed


async def repair(engine: AsyncEngine, *, force: bool = False) -> list[str]:
    """Put the triggers back and rebuild the hours from the minute rows, in one transaction
    that holds writes to `counters` off (the hours missed while they were gone are counted
    again from their minutes). Does nothing when all is as migrated, unless `force`.
    Returns what was wrong before."""
    async with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            await conn.execute(text("LOCK TABLE counters IN SHARE ROW EXCLUSIVE MODE"))
        found = await problems(conn)
        if not found and not force:
            return found
        for statement in _pg_statements() if postgres else _sqlite_statements():
            await conn.execute(text(statement))
        for statement in REBUILD:
            await conn.execute(text(statement))
        return found


def _pg_statements() -> list[str]:
    drops = [f"DROP TRIGGER IF EXISTS {name} ON counters" for name in PG_TRIGGERS]
    functions = [
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $${body}$$"
        for name, body in PG_FUNCTIONS.items()
    ]
    return [*drops, *functions, *PG_TRIGGERS.values()]


def _sqlite_statements() -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS] + list(
        SQLITE_TRIGGERS.values()
    )
