"""structlog set-up: JSON outside development, request ids bound per request, numbers masked."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from pydantic_core import to_json

_NUMBER = re.compile(r"\+\d{7,15}")
# In a request line: +…, its URL-encoded %2B…, a space-encoded ' '…, or a bare number= value.
_URL_NUMBER = re.compile(r"(?i)(\+|%2B|(?<=number=))(\d{7,15})")


def mask_number(number: str | None) -> str | None:
    """+46700000000 → +4670****000: enough to recognise a range, not to dial."""
    if not number:
        return number
    if len(number) <= 7:
        return number[:2] + "*" * max(0, len(number) - 2)
    return number[:5] + "****" + number[-3:]


def _mask_values(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and "+" in value:
            event[key] = _NUMBER.sub(lambda m: mask_number(m.group()) or "", value)
    return event


def mask_numbers_in(text: str) -> str:
    """A request line with every phone number in it masked (the query of a filtered page)."""
    return _URL_NUMBER.sub(lambda m: m.group(1) + (mask_number("+" + m.group(2)) or "")[1:], text)


class MaskedRequestLines(logging.Filter):
    """On uvicorn's access log (when a deployment turns it on): numbers in paths and
    queries masked as in every other log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                mask_numbers_in(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = mask_numbers_in(record.msg)
        return True


def _mask_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, MaskedRequestLines) for f in access.filters):
        access.addFilter(MaskedRequestLines())


def _json(event: Any, **_: Any) -> str:
    """pydantic-core's encoder: one log line per callback is on the hot path."""
    return to_json(event, fallback=str).decode()


class _Stderr:
    """Whatever sys.stderr is when a line is written: cached loggers outlive a replaced stream
    (the CLI run twice in one process, as its tests do, wrote to the first, closed one)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(*, json_logs: bool, level: str = "INFO") -> None:
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_values,
        structlog.processors.format_exc_info if json_logs else structlog.dev.set_exc_info,
        structlog.processors.JSONRenderer(serializer=_json)
        if json_logs
        else structlog.dev.ConsoleRenderer(),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    _mask_access_log()
