"""CSV list entries: `value,note,expires_at` per line, an optional header, UTC if no zone."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from app.errors import Unprocessable
from app.rules.model import ListEntry

COLUMNS = ("value", "note", "expires_at")
MAX_ERRORS = 20


class _CellError(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def parse_entries(text: str) -> list[tuple[int, ListEntry]]:
    """(line number, entry) for every non-empty line; 422 naming line and column otherwise."""
    parsed: list[tuple[int, ListEntry]] = []
    errors: list[dict[str, Any]] = []
    for line, cells in enumerate(csv.reader(io.StringIO(text.lstrip("\ufeff"))), start=1):
        cells = [cell.strip() for cell in cells]
        if not any(cells) or (line == 1 and cells[0].lower() == "value"):
            continue
        try:
            parsed.append((line, _entry(cells)))
        except ValueError as exc:
            errors.extend(_errors(line, exc))
    if errors:
        errors = errors[:MAX_ERRORS]
        raise Unprocessable.listing(errors)
    return parsed


def _entry(cells: list[str]) -> ListEntry:
    if len(cells) > len(COLUMNS):
        raise _CellError("columns", f"at most {len(COLUMNS)} columns: {', '.join(COLUMNS)}")
    value, note, expires = [*cells, "", "", ""][:3]
    return ListEntry(value=value, note=note, expires_at=_moment(expires))


def _moment(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _CellError("expires_at", f"{text!r} is not an ISO 8601 date or time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _errors(line: int, exc: ValueError) -> list[dict[str, Any]]:
    if isinstance(exc, ValidationError):
        return [
            {"loc": f"line {line}.{'.'.join(str(p) for p in err['loc'])}", "msg": err["msg"]}
            for err in exc.errors()
        ]
    column = exc.column if isinstance(exc, _CellError) else "value"
    return [{"loc": f"line {line}.{column}", "msg": str(exc)}]
