"""The JSON log lines: written as they come, flushed once per event-loop turn."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import structlog

from app.logs import configure_logging

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
