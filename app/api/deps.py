"""FastAPI dependencies: the runtime built by create_app, and sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.metrics import Metrics
from app.services.aggregates import Aggregator, Counting
from app.services.alerts.jobs import AlertJobs
from app.services.backtest.launcher import Backtests
from app.services.baselines import BaselineCache
from app.services.intake.dispatch import Intake
from app.services.policy.cache import PolicyCache
from app.services.policy.published import PublishedVersion
from app.services.resilience import Outage
from app.settings import Settings
from app.sinch.signature import SignatureVerifier
from app.store.held import HeldConnections
from app.store.policy import changed_on


@dataclass
class Runtime:
    """Everything a request needs that lives as long as the process."""

    settings: Settings
    engine: AsyncEngine
    reader: AsyncEngine
    """What background jobs and the console's pages read through (store/base.py
    `create_reader`)."""
    counter_engine: AsyncEngine | None
    held: HeldConnections | None
    counting: Counting
    sessions: async_sessionmaker[AsyncSession]
    verifier: SignatureVerifier
    policies: PolicyCache
    aggregator: Aggregator
    intake: Intake
    outage: Outage
    metrics: Metrics
    alerts: AlertJobs
    baselines: BaselineCache
    backtests: Backtests
    published: PublishedVersion | None = None
    """Where Redis's counting script checks the policy's version: tells it of changes."""


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs plain `def` dependencies in a thread pool.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed before the response is sent; a policy change
    it made, told to the counters in Redis before that too (services/policy/published.py)."""
    async with runtime.sessions() as session:
        async with session.begin():
            yield session
            changed = changed_on(await session.connection())
        if changed and runtime.published is not None:
            await runtime.published.changed()


# scope="function": the transaction ends (commits) when the handler returns, before the
# response is sent; the default scope would commit only after the response went out.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
