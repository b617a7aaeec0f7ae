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

_PG_FUNCTION = f"""
CREATE FUNCTION counters_to_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_upsert(_INSERTED)};
    ELSE
        {_upsert(_CHANGED)};
    END IF;
    RETURN NULL;
END
$$
"""

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
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER counters_to_hours AFTER INSERT OR UPDATE ON counters "
            "FOR EACH ROW EXECUTE FUNCTION counters_to_hours()"
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
        op.execute("DROP TRIGGER counters_to_hours ON counters")
        op.execute("DROP FUNCTION counters_to_hours()")
    else:
        op.execute("DROP TRIGGER counters_to_hours_update")
        op.execute("DROP TRIGGER counters_to_hours_insert")
    op.drop_index("ix_counter_hours_hour", table_name="counter_hours")
    op.drop_table("counter_hours")
