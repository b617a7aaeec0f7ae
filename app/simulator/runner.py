"""Play a list of attempts against a callback as Sinch would, in real time, and count answers.

Request events go out on schedule (open loop: a slow answer delays no other attempt; the
sender bounds what is in flight); an allowed attempt later gets its SMS receipt and result
event, after its simulated delay divided by `time_scale`. `pace` records how late each request
event went out and when it was answered.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from app.simulator.callback import Answer, CallbackTarget, Sender, action_of, refusal
from app.simulator.pace import Pace
from app.simulator.report import Tally
from app.simulator.scenarios import Attempt
from app.sinch import samples

Progress = Callable[[Tally, float], None]
RECEIPT_AFTER = 4.0  # simulated seconds from request to the SMS delivery receipt


class Runner:
    """One run: `play` returns the tally once every event has been sent."""

    def __init__(
        self,
        *,
        send: Sender,
        target: CallbackTarget,
        time_scale: float = 60.0,
    ) -> None:
        self._send = send
        self._target = target
        self._scale = time_scale
        self.tally = Tally()
        self.pace = Pace()
        self.refused: str | None = None  # why the run stopped: the callback refuses everything
        self._answered = False

    async def play(self, attempts: Sequence[Attempt], *, progress: Progress | None = None) -> Tally:
        self.pace = Pace()
        started = self.pace.started
        reporter = asyncio.create_task(self._report(progress, started)) if progress else None
        tasks: list[asyncio.Task[None]] = []
        for attempt in attempts:
            delay = started + attempt.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.refused:
                break
            tasks.append(asyncio.create_task(self._attempt(attempt, started + attempt.at)))
        await asyncio.gather(*tasks)
        if reporter is not None and progress is not None:
            reporter.cancel()
            progress(self.tally, time.monotonic() - started)
        return self.tally

    async def _attempt(self, attempt: Attempt, due: float) -> None:
        self.pace.sent(due, time.monotonic())
        ident = str(uuid.uuid4())
        event = samples.request_event(
            number=attempt.number,
            method=attempt.method,
            verification_id=ident,
            price=attempt.price,
            currency=attempt.currency,
        )
        response = await self._send(event)
        self.pace.answer(due, time.monotonic())
        if response is not None and not self._answered:
            # The first answer tells a wrong URL, key or secret: every other would be the same.
            self._answered = True
            self.refused = refusal(self._target, response)
        action = action_of(response) if response is not None else None
        self.tally.record(attempt, action)
        if action == "allow":
            await self._follow_up(attempt, ident)

    async def _follow_up(self, attempt: Attempt, ident: str) -> None:
        outcome = attempt.outcome
        waited = 0.0
        if outcome.sms_result is not None:
            waited = min(RECEIPT_AFTER, outcome.after)
            await asyncio.sleep(waited / self._scale)
            receipt = samples.delivered_event(
                verification_id=ident, number=attempt.number, sms_result=outcome.sms_result
            )
            await self._follow_up_send(receipt)
        await asyncio.sleep((outcome.after - waited) / self._scale)
        result = samples.result_event(
            verification_id=ident,
            number=attempt.number,
            status=outcome.status,
            method=attempt.method,
            reason=outcome.reason,
            source="intercepted" if outcome.status == "SUCCESSFUL" else None,
        )
        await self._follow_up_send(result)

    async def _follow_up_send(self, event: dict[str, Any]) -> None:
        response: Answer | None = await self._send(event)
        self.tally.followups_sent += 1
        if response is None or not 200 <= response.status_code < 300:
            self.tally.followup_errors += 1

    async def _report(self, progress: Progress, started: float) -> None:
        while True:
            await asyncio.sleep(0.5)
            progress(self.tally, time.monotonic() - started)
