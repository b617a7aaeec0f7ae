"""structlog set-up: JSON outside development, request ids bound per request, numbers masked."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from pydantic_core import to_json

_NUMBER = re.compile(r"\+\d{7,15}")


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
