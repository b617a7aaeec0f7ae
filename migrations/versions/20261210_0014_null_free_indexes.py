"""no index entries for a verification's absent rule name or reference

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-10 09:00:00

`ix_verifications_rule_name_requested_at` and `ix_verifications_reference` took an entry for
every verification, but their readers only ever ask for a value (an audit search's
`rule_name = …`, the lookup `reference = …`): none reads the rows where the column is
null. Most request events have neither (an attempt no rule matched has no rule name; a
reference is set only by applications that send one), so each stored decision wrote two
index entries nobody reads, and every update that could not stay on its page (a result)
wrote them again. Both are now partial, `WHERE <column> IS NOT NULL`: a row without the
value writes nothing to them. A comparison on the column implies the predicate, so the
same queries use them (PostgreSQL and SQLite alike).

PostgreSQL builds each new index beside the old one and swaps the names without blocking
writes (CONCURRENTLY, outside a transaction), as 0011 did; each step may be run again after
a failure part way (an interrupted build leaves an invalid `…_new`, dropped first). The
downgrade does the same back. SQLite drops and recreates them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_verifications_rule_name_requested_at", ("rule_name", "requested_at"), "rule_name"),
    ("ix_verifications_reference", ("reference",), "reference"),
)


def _rebuild(partial: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        for name, columns, column in _INDEXES:
            where = {"sqlite_where": sa.text(f"{column} IS NOT NULL")} if partial else {}
            op.drop_index(name, table_name="verifications")
            op.create_index(name, "verifications", list(columns), **where)
        return
    with op.get_context().autocommit_block():
        for name, columns, column in _INDEXES:
            where = f" WHERE {column} IS NOT NULL" if partial else ""
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}_new")
            op.execute(
                f"CREATE INDEX CONCURRENTLY {name}_new ON verifications "
                f"({', '.join(columns)}){where}"
            )
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")


def upgrade() -> None:
    _rebuild(partial=True)


def downgrade() -> None:
    _rebuild(partial=False)
