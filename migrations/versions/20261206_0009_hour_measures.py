"""hour totals hold what windows read

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 09:00:00

`counter_hours` rows held each minute column's sum; windows read per measure the sum of its
columns (allowed + pending, allowed spend + pending spend: pending counts as allowed). Now
an hour row holds each measure's sum in its first column, and `pending`,
`pending_spend_micros` stay 0. A settle of an allowed attempt (pending turned into allowed,
most of the decisions' store statements) then changes no hour, and the triggers skip such
rows instead of upserting an unchanged sum: ~0.035 ms of the database's CPU per stored
decision (docs/operations.md). Window reads are unchanged (they add the measure's columns).

Writes to `counters` wait while this runs (PostgreSQL: `SHARE ROW EXCLUSIVE`, taken first so
no statement writes between the new trigger bodies and the folded hours); the hours are
folded in place, one UPDATE. Downgrade puts 0007's triggers back and rebuilds the hours
from the minutes (what 0007's backfill did; as long as it).
"""

from collections.abc import Callable, Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "attempts",
    "allowed",
    "pending",
    "spend_micros",
    "allowed_spend_micros",
    "pending_spend_micros",
    "successes",
)
_NAMES = ", ".join(_COLUMNS)
_ADD = ", ".join(f"{c} = counter_hours.{c} + excluded.{c}" for c in _COLUMNS)
# per hour column, the minute columns it sums (the others stay 0)
_FOLDED = {
    "attempts": ("attempts",),
    "allowed": ("allowed", "pending"),
    "spend_micros": ("spend_micros",),
    "allowed_spend_micros": ("allowed_spend_micros", "pending_spend_micros"),
    "successes": ("successes",),
}


def _values(term: Callable[[str], str]) -> list[str]:
    return [" + ".join(term(c) for c in _FOLDED.get(column, ())) or "0" for column in _COLUMNS]


def _changed(values: list[str]) -> str:
    return " OR ".join(f"{v} <> 0" for v in values if v != "0")


def _pg_function(name: str, source: str, term: Callable[[str], str]) -> str:
    values = _values(lambda c: f"sum({term(c)})")
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO counter_hours (key, hour, {_NAMES})
    SELECT n.key, n.bucket - n.bucket % 3600, {", ".join(values)}
    FROM {source}
    GROUP BY 1, 2 HAVING {_changed(values)} ORDER BY 1, 2
    ON CONFLICT (key, hour) DO UPDATE SET {_ADD};
    RETURN NULL;
END
$$
"""


def _old_pg_function(name: str, source: str, values: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO counter_hours (key, hour, {_NAMES})
    SELECT n.key, n.bucket - n.bucket % 3600, {values}
    FROM {source}
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (key, hour) DO UPDATE SET {_ADD};
    RETURN NULL;
END
$$
"""


_UPDATED = "updated n JOIN replaced o ON o.key = n.key AND o.bucket = n.bucket"


def _sqlite_trigger(name: str, event: str, term: Callable[[str], str]) -> str:
    values = _values(term)
    return (
        f"CREATE TRIGGER {name} AFTER {event} ON counters WHEN {_changed(values)} BEGIN "
        f"INSERT INTO counter_hours (key, hour, {_NAMES}) "
        f"VALUES (NEW.key, NEW.bucket - NEW.bucket % 3600, {', '.join(values)}) "
        f"ON CONFLICT (key, hour) DO UPDATE SET {_ADD}; END"
    )


def _old_sqlite_trigger(name: str, event: str, values: str) -> str:
    return (
        f"CREATE TRIGGER {name} AFTER {event} ON counters BEGIN "
        f"INSERT INTO counter_hours (key, hour, {_NAMES}) "
        f"VALUES (NEW.key, NEW.bucket - NEW.bucket % 3600, {values}) "
        f"ON CONFLICT (key, hour) DO UPDATE SET {_ADD}; END"
    )


_FOLD = (
    "UPDATE counter_hours SET allowed = allowed + pending, pending = 0, "
    "allowed_spend_micros = allowed_spend_micros + pending_spend_micros, "
    "pending_spend_micros = 0 WHERE pending <> 0 OR pending_spend_micros <> 0"
)
_REBUILD = (
    "DELETE FROM counter_hours",
    f"INSERT INTO counter_hours (key, hour, {_NAMES}) "
    f"SELECT key, bucket - bucket % 3600, {', '.join(f'sum({c})' for c in _COLUMNS)} "
    "FROM counters GROUP BY key, bucket - bucket % 3600",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("LOCK TABLE counters IN SHARE ROW EXCLUSIVE MODE")
        op.execute(_pg_function("counters_inserted_to_hours", "inserted n", lambda c: f"n.{c}"))
        op.execute(_pg_function("counters_updated_to_hours", _UPDATED, lambda c: f"n.{c} - o.{c}"))
    else:
        op.execute("DROP TRIGGER counters_to_hours_insert")
        op.execute("DROP TRIGGER counters_to_hours_update")
        op.execute(_sqlite_trigger("counters_to_hours_insert", "INSERT", lambda c: f"NEW.{c}"))
        op.execute(
            _sqlite_trigger("counters_to_hours_update", "UPDATE", lambda c: f"NEW.{c} - OLD.{c}")
        )
    op.execute(_FOLD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("LOCK TABLE counters IN SHARE ROW EXCLUSIVE MODE")
        inserted = ", ".join(f"sum(n.{c})" for c in _COLUMNS)
        updated = ", ".join(f"sum(n.{c} - o.{c})" for c in _COLUMNS)
        op.execute(_old_pg_function("counters_inserted_to_hours", "inserted n", inserted))
        op.execute(_old_pg_function("counters_updated_to_hours", _UPDATED, updated))
    else:
        op.execute("DROP TRIGGER counters_to_hours_insert")
        op.execute("DROP TRIGGER counters_to_hours_update")
        inserted = ", ".join(f"NEW.{c}" for c in _COLUMNS)
        changed = ", ".join(f"NEW.{c} - OLD.{c}" for c in _COLUMNS)
        op.execute(_old_sqlite_trigger("counters_to_hours_insert", "INSERT", inserted))
        op.execute(_old_sqlite_trigger("counters_to_hours_update", "UPDATE", changed))
    for statement in _REBUILD:
        op.execute(statement)
