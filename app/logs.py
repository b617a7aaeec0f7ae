"""structlog set-up: JSON outside development, request ids bound per request, numbers masked."""

from __future__ import annotations

import asyncio
import codecs
import io
import logging
import re
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic_core import to_json

_NUMBER = re.compile(r"\+\d{7,15}")
# In a request line: +…, its URL-encoded %2B…, a space-encoded ' '…, or a bare number= value.
_URL_NUMBER = re.compile(r"(?i)(\+|%2B|(?<=number=))(\d{7,15})")


# The log context: the request id, bound per request (middleware.py, callbacks.py) and inherited
# by the tasks the request starts. Its own variable, not structlog.contextvars: those bind
# one variable per key and find them by walking every variable in the context
# (copy_context) to clear them, then again for each line to merge them: ~14k instructions
# a request event (bench/request_cpu under callgrind), for the one key the app binds.
_REQUEST_ID: ContextVar[str | None] = ContextVar("verifyguard_request_id", default=None)


def bind_request_id(request_id: str) -> None:
    """Every line logged from here on in this context (and the tasks it starts) carries
    `request_id`."""
    _REQUEST_ID.set(request_id)


def _merge_request_id(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """As structlog's merge_contextvars did for the bound request id: a key the call passes
    wins."""
    request_id = _REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


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


class _UtcTimestamp:
    """`timestamp` exactly as structlog's TimeStamper(fmt="iso", utc=True) writes it
    (2026-12-05T00:05:01.834934Z; no fraction on a whole second), with the date and time of
    day formatted once a second: 0.6 µs a line instead of 1.6 µs. Any thread may log: the
    second and its text are kept as one tuple, replaced whole."""

    def __init__(self) -> None:
        # The second, its text with a fraction to fill in, and its text alone.
        self._second: tuple[int, str, str] = (-1, "", "")

    def __call__(self, _logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        cached, fraction, whole = self._second
        if second != cached:
            whole = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S") + "Z"
            fraction = whole[:-1] + ".%06dZ"
            self._second = (second, fraction, whole)
        micros = nanos // 1000  # datetime.now() floors to the microsecond too
        # One %-format of an int (an f-string's format spec cost ~1.5k instructions more).
        event["timestamp"] = fraction % micros if micros else whole
        return event


def _json(event: Any, **_: Any) -> str:
    """pydantic-core's encoder: one log line per callback is on the hot path."""
    return to_json(event, fallback=str).decode()


class _JsonLine:
    """The JSON chain after the context's merge in one processor: add_log_level, the
    timestamp, `_mask_values`, format_exc_info and the JSONRenderer, the same line.

    A request event's line went through five processor calls (~78k instructions, 3 % of
    the app's per answer). Here the line is encoded once and masked only if a "+" is in it:
    pydantic-core's encoder writes a string's "+" as is, so a line without one has no
    string value `_mask_values` would change (one with one, in a key or a non-string value
    too, takes `_mask_values` and is encoded again). A line with `exc_info` takes the
    processors' own path, in their order (its traceback unmasked, as before)."""

    def __init__(self) -> None:
        self._timestamp = _UtcTimestamp()
        self._exc_info = structlog.processors.format_exc_info

    def __call__(self, logger: Any, name: str, event: dict[str, Any]) -> str | bytes:
        """The line: as the encoder's UTF-8 bytes (`_StderrLines` writes them as they are), or
        as text for a line with `exc_info`."""
        event["level"] = _LEVELS.get(name, name)
        self._timestamp(logger, name, event)
        if "exc_info" in event:
            return _json(self._exc_info(logger, name, _mask_values(logger, name, event)))
        line = to_json(event, fallback=str)
        # find, not `in`: bytes' `in` tries its operand as a byte value first and formats
        # the TypeError saying it is not one (~1.8k instructions a line).
        if line.find(b"+") >= 0:
            line = to_json(_mask_values(logger, name, event), fallback=str)
        return line


# structlog's add_log_level: its method name, but "warn" and "exception" mapped.
_LEVELS = {"warn": "warning", "exception": "error"}


class _StderrLines:
    """Writes each line to whatever sys.stderr is when it is written (cached loggers outlive a
    replaced stream: the CLI run twice in one process, as its tests do, wrote to the first,
    closed one).

    The interpreter's stderr is write-through to its file descriptor (each write is a write(2)
    of its own: nothing is left to flush, and no flush is scheduled; scheduling one was ~28k
    instructions of a request event's line). A stream that buffers is, inside an event loop,
    flushed once per loop turn, after the callbacks that
    wrote (one write(2) for a busy turn's lines, not one per line: a request event writes one
    line, and its flush was ~3 % of its CPU); outside one, or if a scheduled flush has not run
    within `_STALE` seconds (its loop stopped), at once."""

    _STALE = 0.5

    def __init__(self) -> None:
        self._since: float | None = None  # when the pending flush was scheduled
        self._stream: object = None  # the stream last written, and whether it writes through
        self._direct = False
        self._utf8 = False  # and whether it encodes as UTF-8

    def msg(self, message: str | bytes) -> None:
        """One line; a JSON line comes as its UTF-8 bytes. To the interpreter's UTF-8 stderr
        they go to its file as they are (decoded and encoded again: ~2k instructions a line)."""
        stream = sys.stderr
        if stream is not self._stream:
            self._stream, self._direct = stream, _writes_through(stream)
            self._utf8 = _is_utf8(getattr(stream, "encoding", None))
        if isinstance(message, bytes):
            if self._direct and self._utf8:
                stream.buffer.write(message + b"\n")
                return  # written through: nothing to flush
            message = message.decode()
        stream.write(message + "\n")
        if self._direct:
            return  # the interpreter's own stderr: the line went out as written, no flush
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()  # a thread without a loop (the spool's), the CLI
            return
        since = self._since
        if since is not None and time.monotonic() - since < self._STALE:
            return  # a flush is scheduled already
        self._since = time.monotonic()
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._since = None
        sys.stderr.flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _is_utf8(encoding: str | None) -> bool:
    try:
        return encoding is not None and codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def _writes_through(stream: object) -> bool:
    """A text stream whose writes reach its file descriptor at once (no buffer between)."""
    buffer = getattr(stream, "buffer", None)
    return bool(getattr(stream, "write_through", False)) and isinstance(buffer, io.RawIOBase)


class _StderrLinesFactory:
    def __init__(self) -> None:
        self._lines = _StderrLines()

    def __call__(self, *args: Any) -> _StderrLines:
        return self._lines


class _InfoLines:
    """An info line written as the JSON chain writes it (`_merge_request_id`, `_JsonLine`,
    `_StderrLines`: the same processors, called directly), without structlog's bound-logger
    call around them: its keywords packed and unpacked three times, the context copied, the
    chain's loop and its checks of what the last processor returned (~17k instructions of a
    request event's `decision.made` line)."""

    def __init__(self, json_line: _JsonLine, lines: _StderrLines) -> None:
        self._json_line = json_line
        self._lines = lines

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        fields["event"] = event
        self._lines.msg(self._json_line(None, "info", _merge_request_id(None, "info", fields)))


def _drop(event: str, fields: dict[str, Any]) -> None:
    """An info line below the configured level."""


def _through_structlog(event: str, fields: dict[str, Any]) -> None:
    structlog.get_logger().info(event, **fields)


# How `info` writes: set by configure_logging (structlog's own call until then, and for
# the development console's lines).
_info: Any = _through_structlog


def info(event: str, fields: dict[str, Any]) -> None:
    """`structlog.get_logger().info(event, **fields)`: the same line, for the lines logged once
    per callback (`fields` is the line's: it is taken, not copied)."""
    _info(event, fields)


def configure_logging(*, json_logs: bool, level: str = "INFO") -> None:
    global _info
    processors: list[Any] = [_merge_request_id]
    threshold = logging.getLevelName(level.upper())
    lines = _StderrLinesFactory()
    if json_logs:
        json_line = _JsonLine()
        processors.append(json_line)
        _info = _InfoLines(json_line, lines()) if threshold <= logging.INFO else _drop
    else:
        _info = _through_structlog
        processors += [
            structlog.processors.add_log_level,
            _UtcTimestamp(),
            _mask_values,
            structlog.dev.set_exc_info,
            structlog.dev.ConsoleRenderer(),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=lines,
        cache_logger_on_first_use=True,
    )
    _mask_access_log()
