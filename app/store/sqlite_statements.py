"""The request path's statements on SQLite, run on the sqlite3 cursor itself.

Each statement a group commit's batch runs (store/thread_connection.py) went through
SQLAlchemy's execution machinery: an execution context, the parameters constructed and
processed by name, a result object with its metadata. For the batch's hot statements (the
counts, the window read, the inbox claim, the deferred rows) that cost more CPU on the one
writer's thread than SQLite's own work did. A `Plan` keeps what SQLAlchemy compiled once —
the SQL text, the parameter order and each parameter's bind processor (the same that
SQLAlchemy applies: UTC datetimes, JSON) — and runs the statement on the DBAPI cursor.
Values stored are therefore the same; a failure is wrapped as SQLAlchemy wraps it
(`DBAPIError.instance`), so callers see the same exceptions. Statements whose result
columns need processing, or whose parameters are expanded at execution, have no plan and
run through SQLAlchemy as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, cast
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Select, TextClause
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.selectable import TextualSelect

Processor = Callable[[Any], Any]


class Rows(list[tuple[Any, ...]]):
    """A planned statement's result rows, fetched at once (tuples, in column order)."""

    def scalar_one(self) -> Any:
        if not self:
            raise NoResultFound("No row was found when one was required")
        return self.scalar_one_or_none()

    def scalar_one_or_none(self) -> Any:
        if len(self) > 1:
            raise MultipleResultsFound("Multiple rows were found when one or none was required")
        return self[0][0] if self else None


@dataclass(frozen=True, slots=True)
class Plan:
    """A statement compiled once for the sqlite3 cursor (see the module docstring)."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Processor | None, ...]
    defaults: Mapping[str, Any]
    """The values of parameters bound in the statement itself (literals such as a CASE's
    ELSE 0), for when the caller gives none."""

    take: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(init=False, repr=False)
    processed: tuple[tuple[int, Processor], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # A count's upsert binds ~50 parameters, none processed: one C call takes them.
        if len(self.names) > 1:
            take: Any = itemgetter(*self.names)
        else:
            take = lambda p, n=self.names: tuple(p[name] for name in n)  # noqa: E731
        object.__setattr__(self, "take", take)
        processed = tuple((i, p) for i, p in enumerate(self.processors) if p is not None)
        object.__setattr__(self, "processed", processed)

    def values(self, parameters: Mapping[str, Any]) -> tuple[Any, ...]:
        try:
            values = self.take(parameters)
        except KeyError:  # one bound in the statement itself
            defaults = self.defaults
            values = tuple(parameters[n] if n in parameters else defaults[n] for n in self.names)
        if not self.processed:
            return values
        processed = list(values)
        for i, process in self.processed:
            processed[i] = process(processed[i])
        return tuple(processed)


_PLANNED = (TextClause, TextualSelect, Select)
_PLANS: WeakKeyDictionary[Dialect, dict[int, tuple[ClauseElement, Plan | None]]]
_PLANS = WeakKeyDictionary()  # per dialect: its JSON serializer is part of the plan


def plan(conn: Connection, statement: Any) -> Plan | None:
    """The statement's plan (compiled on first use with this connection's dialect), or
    None if it must run through SQLAlchemy."""
    plans = _PLANS.get(conn.dialect)
    if plans is None:
        plans = _PLANS[conn.dialect] = {}
    found = plans.get(id(statement))
    if found is not None and found[0] is statement:
        return found[1]
    if not isinstance(statement, _PLANNED):
        return None  # an insert() compiles per the columns given: SQLAlchemy's
    made = _compile(conn, statement)
    plans[id(statement)] = (statement, made)  # the statement is kept: its id stays its own
    return made


def _compile(conn: Connection, statement: ClauseElement) -> Plan | None:
    dialect = conn.dialect
    compiled: Any = statement.compile(dialect=dialect)
    if compiled.positiontup is None or compiled.post_compile_params:
        return None
    if compiled.literal_execute_params:
        return None
    for column in compiled._result_columns:
        if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
            return None
    processors = compiled._bind_processors
    names = tuple(compiled.positiontup)
    binds = compiled.binds
    defaults = {
        name: binds[name].effective_value
        for name in names
        if not binds[name].required and binds[name].callable is None
    }
    return Plan(
        sql=compiled.string,
        names=names,
        processors=tuple(processors.get(name) for name in names),
        defaults=defaults,
    )


def run(conn: Connection, found: Plan, parameters: Mapping[str, Any]) -> Rows:
    """One execution of a planned statement; its rows, if it returns any."""
    values = found.values(parameters)
    cursor = None
    try:
        cursor = _cursor(conn, found.sql, values, many=False)
        cursor.execute(found.sql, values)
        return Rows(cursor.fetchall()) if cursor.description is not None else Rows()
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, cursor, found.sql, values, exc) from exc
    finally:
        if cursor is not None:
            cursor.close()


def run_many(conn: Connection, found: Plan, rows: Sequence[Mapping[str, Any]]) -> None:
    """One executemany of a planned statement (it returns nothing)."""
    values = [found.values(row) for row in rows]
    cursor = None
    try:
        cursor = _cursor(conn, found.sql, values, many=True)
        cursor.executemany(found.sql, values)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, cursor, found.sql, values, exc) from exc
    finally:
        if cursor is not None:
            cursor.close()


def _cursor(conn: Connection, sql: str, values: Iterable[Any], *, many: bool) -> Any:
    """A cursor on the connection's sqlite3 connection; the engine's `before_cursor_execute`
    listeners (the benches count statements with one) hear of the statement."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    if conn._has_events or conn.engine._has_events:
        conn.dispatch.before_cursor_execute(conn, cursor, sql, values, None, many)
    return cursor


def _wrapped(conn: Connection, cursor: Any, sql: str, values: Any, exc: Exception) -> BaseException:
    """The DBAPI error as SQLAlchemy raises it (IntegrityError, OperationalError, …): a
    closed database also invalidates the connection and says so (what makes it an outage:
    services/resilience/errors.py)."""
    dialect = conn.dialect
    raw = conn.connection.dbapi_connection
    lost = dialect.is_disconnect(cast(Any, exc), raw, cursor)
    if lost:
        conn.invalidate(exc)
    error: type[Exception] = dialect.loaded_dbapi.Error
    return DBAPIError.instance(
        sql, values, exc, error, connection_invalidated=lost, dialect=dialect
    )
