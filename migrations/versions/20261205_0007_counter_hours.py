"""counter hour totals

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 03:00:00

`counter_hours`: per counter key and hour, the sums of the `counters` buckets that start in
that hour, so a 24 h window reads ~24 hour rows and its two edges' buckets instead of
1,440 buckets (bench/counter_history.py). Triggers on `counters` add every insert's values,
and every update's change, to the row of its hour, in the writing statement itself: every
writer (the counts, the settles carried by the decisions' store, credited successes, the
benches' and tests' own inserts) keeps the hours in step without knowing of them. Hours
counted before this revision are backfilled from their buckets here, under the trigger
(created first: on PostgreSQL it locks `counters` against writes until this commits).
Retention deletes buckets without a trigger and hours on its own (store/retention.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
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
_HOUR = "NEW.bucket - NEW.bucket % 3600"


def _upsert(values: str) -> str:
    return (
        f"INSERT INTO counter_hours (key, hour, {_NAMES}) VALUES (NEW.key, {_HOUR}, {values}) "
        f"ON CONFLICT (key, hour) DO UPDATE SET {_ADD}"
    )


_INSERTED = ", ".join(f"NEW.{c}" for c in _COLUMNS)
_CHANGED = ", ".join(f"NEW.{c} - OLD.{c}" for c in _COLUMNS)

# On PostgreSQL the triggers run once per statement over its transition tables: a batch's
# rows go to their hours in one grouped upsert (in key order, as the counts lock their rows),
# where a row trigger ran a PL/pgSQL call and an upsert per bucket (~0.1 ms of the database's
# CPU per attempt in `make bench`). An INSERT ... ON CONFLICT shows its inserted rows to the
# INSERT trigger and its updated ones to the UPDATE trigger.


def _pg_function(name: str, source: str, values: str) -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
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


_PG_INSERTED = _pg_function(
    "counters_inserted_to_hours", "inserted n", ", ".join(f"sum(n.{c})" for c in _COLUMNS)
)
_PG_UPDATED = _pg_function(
    "counters_updated_to_hours",
    "updated n JOIN replaced o ON o.key = n.key AND o.bucket = n.bucket",
    ", ".join(f"sum(n.{c} - o.{c})" for c in _COLUMNS),
)

_BACKFILL = (
    f"INSERT INTO counter_hours (key, hour, {_NAMES}) "
    f"SELECT key, bucket - bucket % 3600, {', '.join(f'sum({c})' for c in _COLUMNS)} "
    "FROM counters GROUP BY key, bucket - bucket % 3600"
)


def upgrade() -> None:
    op.create_table(
        "counter_hours",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("hour", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("allowed", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("spend_micros", sa.BigInteger(), nullable=False),
        sa.Column("allowed_spend_micros", sa.BigInteger(), nullable=False),
        sa.Column("pending_spend_micros", sa.BigInteger(), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "hour", name=op.f("pk_counter_hours")),
    )
    op.create_index("ix_counter_hours_hour", "counter_hours", ["hour"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_INSERTED)
        op.execute(_PG_UPDATED)
        op.execute(
            "CREATE TRIGGER counters_inserted_to_hours AFTER INSERT ON counters "
            "REFERENCING NEW TABLE AS inserted "
            "FOR EACH STATEMENT EXECUTE FUNCTION counters_inserted_to_hours()"
        )
        op.execute(
            "CREATE TRIGGER counters_updated_to_hours AFTER UPDATE ON counters "
            "REFERENCING OLD TABLE AS replaced NEW TABLE AS updated "
            "FOR EACH STATEMENT EXECUTE FUNCTION counters_updated_to_hours()"
        )
    else:
        op.execute(
            "CREATE TRIGGER counters_to_hours_insert AFTER INSERT ON counters "
            f"BEGIN {_upsert(_INSERTED)}; END"
        )
        op.execute(
            "CREATE TRIGGER counters_to_hours_update AFTER UPDATE ON counters "
            f"BEGIN {_upsert(_CHANGED)}; END"
        )
    op.execute(_BACKFILL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER counters_updated_to_hours ON counters")
        op.execute("DROP TRIGGER counters_inserted_to_hours ON counters")
        op.execute("DROP FUNCTION counters_updated_to_hours()")
        op.execute("DROP FUNCTION counters_inserted_to_hours()")
    else:
        op.execute("DROP TRIGGER counters_to_hours_update")
        op.execute("DROP TRIGGER counters_to_hours_insert")
    op.drop_index("ix_counter_hours_hour", table_name="counter_hours")
    op.drop_table("counter_hours")
