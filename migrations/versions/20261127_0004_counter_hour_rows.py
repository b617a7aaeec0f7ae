"""counters: hour rows beside the minute rows (PostgreSQL)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 15:00:00

Each counter key keeps, besides its minute rows, one row per hour ("<key>@h", bucket = the
hour's start) holding that hour's totals; long windows read whole hours from them. This
fills them from the minute rows already stored (exactly, and again if run twice). Stop the
previous version's workers first: minutes they count afterwards would be missing from the
hour rows. SQLite reads its windows from the minutes and keeps no hour rows.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "attempts",
    "allowed",
    "pending",
    "spend_micros",
    "allowed_spend_micros",
    "pending_spend_micros",
    "successes",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    names = ", ".join(COLUMNS)
    sums = ", ".join(f"sum({c})" for c in COLUMNS)
    replace = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS)
    # Column names from this file, no input.
    backfill = (
        f"INSERT INTO counters (key, bucket, {names}) "  # noqa: S608
        f"SELECT key || '@h', bucket - bucket % 3600, {sums} FROM counters "
        "WHERE key NOT LIKE '%@h' GROUP BY 1, 2 "
        f"ON CONFLICT (key, bucket) DO UPDATE SET {replace}"
    )
    op.execute(backfill)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DELETE FROM counters WHERE key LIKE '%@h'")
