"""The JSON log lines: written as they come, flushed once per event-loop turn (not at all on a
stream that writes through), the same lines as structlog's processors made."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from app import logs
from app.logs import (
    _json,
    _JsonLine,
    _mask_values,
    _UtcTimestamp,
    bind_request_id,
    configure_logging,
)

ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


@contextmanager
def captured() -> Iterator[CountingStream]:
    """sys.stderr replaced within a test's body (pytest's capture sets its own between the
    setup and call phases, so a fixture's replacement would not last)."""
    counting, saved = CountingStream(), sys.stderr
    sys.stderr = counting
    configure_logging(json_logs=True)
    try:
        yield counting
    finally:
        sys.stderr = saved
        structlog.reset_defaults()


def _lines(stream: CountingStream) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_of_one_loop_turn_share_one_flush() -> None:
    async def burst(stream: CountingStream) -> int:
        log = structlog.get_logger()
        for index in range(5):
            log.info("decision.made", index=index, number="+46701234567")
        flushed_during_turn = stream.flushes
        await asyncio.sleep(0)  # the turn ends: the scheduled flush runs
        await asyncio.sleep(0)
        return flushed_during_turn

    with captured() as stream:
        assert asyncio.run(burst(stream)) == 0
    assert stream.flushes == 1
    lines = _lines(stream)
    assert [line["index"] for line in lines] == [0, 1, 2, 3, 4]
    assert lines[0]["number"] == "+4670****567"
    assert list(lines[0]) == ["index", "number", "event", "level", "timestamp"]


def test_a_line_outside_a_loop_is_flushed_at_once() -> None:
    with captured() as stream:
        structlog.get_logger().warning("app.stopped", spool_depth=0)
    assert stream.flushes == 1
    assert _lines(stream)[0]["level"] == "warning"


def test_a_flush_whose_loop_stopped_does_not_hold_later_lines() -> None:
    loop = asyncio.new_event_loop()

    async def one_line() -> None:
        structlog.get_logger().info("first")
        loop.stop()  # the loop ends with this turn: the flush it scheduled never runs

    with captured() as stream:
        task = loop.create_task(one_line())
        loop.run_forever()
        assert task.done()
        loop.close()
        assert stream.flushes == 0
        structlog.get_logger().info("second")  # no running loop: flushed at once
    assert stream.flushes == 1
    assert [line["event"] for line in _lines(stream)] == ["first", "second"]


def test_the_timestamp_is_structlogs_iso_utc_of_the_moment_logged() -> None:
    with captured() as stream:
        before = datetime.now(UTC)
        for _ in range(200):
            structlog.get_logger().info("decision.made")
        after = datetime.now(UTC)
    stamps = [str(line["timestamp"]) for line in _lines(stream)]
    for stamp in stamps:
        assert ISO_UTC.fullmatch(stamp), stamp
        moment = datetime.fromisoformat(stamp)
        assert before <= moment <= after
        # what structlog's TimeStamper(fmt="iso", utc=True) writes for that moment
        assert moment.isoformat().replace("+00:00", "Z") == stamp
    assert stamps == sorted(stamps, key=datetime.fromisoformat)


class CountingThrough(io.TextIOWrapper):
    """A text stream as the interpreter's stderr is: write-through to an unbuffered file."""

    flushes = 0

    def flush(self) -> None:
        type(self).flushes += 1
        super().flush()


def test_a_write_through_stream_gets_each_line_as_written_and_no_flush(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    stream = CountingThrough(io.FileIO(path, "w"), encoding="utf-8", write_through=True)
    CountingThrough.flushes = 0

    async def lines() -> list[str]:
        seen = []
        for index in range(3):
            structlog.get_logger().info("decision.made", index=index)
            seen.append(path.read_text())  # on disk before the loop turn ends
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return seen

    saved, sys.stderr = sys.stderr, stream
    configure_logging(json_logs=True)
    try:
        seen = asyncio.run(lines())
    finally:
        sys.stderr = saved
        structlog.reset_defaults()
        stream.close()
    assert [text.count("\n") for text in seen] == [1, 2, 3]
    assert CountingThrough.flushes == 1  # the close's own; none scheduled per line


def _processor_chain_line(name: str, event: dict[str, Any]) -> str:
    """The line structlog's own processors made (the JSON chain before it was one)."""
    chain: list[Any] = [
        structlog.processors.add_log_level,
        _UtcTimestamp(),
        _mask_values,
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(serializer=_json),
    ]
    out: Any = event
    for processor in chain:
        out = processor(None, name, out)
    return str(out)


def _without_timestamp(line: str | bytes) -> str:
    """The line as text (a JSON line comes as its UTF-8 bytes), its timestamp left out."""
    text = line.decode() if isinstance(line, bytes) else line
    return re.sub(r',"timestamp":"[^"]*"', "", text)


def test_a_json_line_is_what_structlogs_processors_made() -> None:
    try:
        raise ValueError("+46701234567 refused")
    except ValueError:
        failure = sys.exc_info()
    events: list[tuple[str, dict[str, Any]]] = [
        ("info", {"event": "decision.made", "action": "allow", "rule": None, "ms": 1.5}),
        ("info", {"event": "x", "number": "+46701234567", "note": "call +4412345678901 now"}),
        ("warn", {"event": "x", "nested": {"number": "+46701234567"}, "n": 46701234567}),
        ("info", {"event": "x", "+46701234567": "key", "at": datetime(2026, 1, 1, tzinfo=UTC)}),
        ("exception", {"event": "crash", "number": "+46701234567", "exc_info": failure}),
        ("error", {"event": "x", "exc_info": False, "short": "+123"}),
    ]
    line = _JsonLine()
    for name, event in events:
        expected = _processor_chain_line(name, dict(event))
        assert _without_timestamp(line(None, name, dict(event))) == _without_timestamp(expected)


def test_info_writes_the_line_structlogs_logger_writes() -> None:
    """`logs.info` skips the bound logger's call, not a processor: the request id merged (a
    key the line passes wins), numbers masked, the keys in the same order."""
    fields: list[dict[str, Any]] = [
        {"event_type": "request", "verification_id": "v-1", "rule": None, "latency_ms": 3.12},
        {"verification_id": "+46701234567", "reason": "range +4412345678901", "status": 200},
        {"request_id": "passed", "outcome": "decided", "event_type": "request"},
        {"text": 'ünïcode \u2028 "quoted" \\ \x01', "amount": float("inf"), "n": None},
    ]

    async def both() -> None:
        bind_request_id("req-17")
        for each in fields:
            structlog.get_logger().info("decision.made", **dict(each))
            logs.info("decision.made", dict(each))

    with captured() as stream:
        asyncio.run(both())
    lines = stream.getvalue().split("\n")[:-1]  # (not splitlines: U+2028 is in a line)
    assert len(lines) == 2 * len(fields)
    for through_structlog, direct in zip(lines[::2], lines[1::2], strict=True):
        assert _without_timestamp(direct) == _without_timestamp(through_structlog)
    assert json.loads(lines[1])["request_id"] == "req-17"
    assert json.loads(lines[5])["request_id"] == "passed"
    assert "+46701234567" not in stream.getvalue()


def test_info_below_the_level_writes_nothing_and_the_console_goes_through_structlog() -> None:
    counting, saved = CountingStream(), sys.stderr
    sys.stderr = counting
    try:
        configure_logging(json_logs=True, level="WARNING")
        logs.info("decision.made", {"action": "allow"})
        assert counting.getvalue() == ""
        configure_logging(json_logs=False)
        with structlog.testing.capture_logs() as captured_lines:
            logs.info("decision.made", {"action": "allow"})
    finally:
        sys.stderr = saved
        structlog.reset_defaults()
    assert captured_lines == [{"action": "allow", "event": "decision.made", "log_level": "info"}]
