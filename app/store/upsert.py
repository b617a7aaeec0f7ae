"""INSERT … ON CONFLICT statements, built once and cached.

SQLAlchemy does not cache the compiled form of its dialect-specific inserts (the ones with
`on_conflict_*`), so the hot path uses textual statements with typed bind parameters:
PostgreSQL and SQLite (3.35+) share the ON CONFLICT … RETURNING syntax.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table, TextClause, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def insert_for(conn: AsyncConnection, table: Table) -> Any:
    """A dialect insert() with on_conflict_do_nothing/do_update (for paths off the hot one)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def upsert(
    table: Table,
    columns: Sequence[str],
    *,
    conflict: Sequence[str],
    update: Mapping[str, str] | None = None,
    returning: Sequence[str] = (),
    rows: int = 1,
    shared: Sequence[str] = (),
) -> TextClause:
    """INSERT `rows` rows of `columns`; on conflict apply `update` (SQL per column) or do nothing.

    `conflict` names the unique index's columns or expressions (an expression in parentheses).

    Parameters are named after the columns, suffixed `_<row>` when `rows` > 1, except the
    `shared` ones, bound once for every row.
    """
    names = ", ".join(columns)

    def param(column: str, row: int) -> str:
        return column if rows == 1 or column in shared else f"{column}_{row}"

    values = ", ".join(
        "(" + ", ".join(f":{param(c, r)}" for c in columns) + ")" for r in range(rows)
    )
    action = (
        "DO UPDATE SET " + ", ".join(f"{c} = {expr}" for c, expr in update.items())
        if update
        else "DO NOTHING"
    )
    target = ", ".join(conflict)
    sql = f"INSERT INTO {table.name} ({names}) VALUES {values} ON CONFLICT ({target}) {action}"
    if returning:
        sql += " RETURNING " + ", ".join(returning)
    binds = {param(c, r): table.c[c].type for c in columns for r in range(rows)}
    stmt = text(sql).bindparams(*(bindparam(name, type_=kind) for name, kind in binds.items()))
    if returning:
        return stmt.columns(*(table.c[c] for c in returning))  # type: ignore[return-value]
    return stmt


_CACHE: dict[Hashable, TextClause] = {}


def cached(shape: Hashable, build: Any) -> TextClause:
    """The statement for `shape`, built on first use by `build()`."""
    statement = _CACHE.get(shape)
    if statement is None:
        statement = _CACHE[shape] = build()
    return statement


__all__ = ["cache", "cached", "insert_for", "upsert"]
