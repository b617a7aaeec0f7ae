"""Background tasks whose failure is expected and handled elsewhere (late work, probes)."""

from __future__ import annotations

import asyncio
from typing import Any


def retrieve_exception(task: asyncio.Future[Any]) -> None:
    """A done-callback: read the task's exception, so asyncio does not log it as never
    retrieved (its failure is an answer to whoever looks, not news)."""
    if not task.cancelled():
        task.exception()
