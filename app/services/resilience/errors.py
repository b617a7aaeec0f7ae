"""Which failures mean the database cannot be reached (an outage), not a bug or a bad row."""

from __future__ import annotations

from asyncpg.exceptions import (  # type: ignore[import-untyped]
    InterfaceError,
    PostgresConnectionError,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# OSError covers refused and reset connections, and socket timeouts.
_UNREACHABLE = (OSError, PostgresConnectionError, InterfaceError, PoolTimeout)


def is_outage(error: BaseException) -> bool:
    """True when `error`, or what caused it, says the connection failed or was lost."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNREACHABLE):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False
