"""create_app(settings): the FastAPI app; build_runtime, its composition root, builds every
long-lived object (engines, policy, counters, metrics, intake and its collaborators) once per
app run and hands each what it needs through its constructor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api import admin, audit, callbacks, health, metrics
from app.api.bodies import BodyLimit
from app.api.deps import Runtime
from app.api.middleware import RequestIdMiddleware, RequestIds
from app.api.problems import install_openapi
from app.devapp import load_or_create_dev_app
from app.errors import install_error_handlers
from app.gc_settings import server_gc
from app.logs import configure_logging
from app.metrics import Metrics
from app.services import baselines as baseline_refresh
from app.services.admission import TARGET_SHARE, Admission
from app.services.aggregates import Aggregator, Counting, counting_scope
from app.services.alerts.jobs import AlertJobs
from app.services.audit import retention
from app.services.audit import rollup as stats_rollup
from app.services.backtest.jobs import Defaults as BacktestDefaults
from app.services.backtest.launcher import Backtests
from app.services.baselines import BaselineCache
from app.services.intake.batching import Batcher
from app.services.intake.decide import Decider
from app.services.intake.dispatch import Intake
from app.services.intake.lanes import PgBatches
from app.services.intake.outcomes import Outcomes
from app.services.intake.redis_batches import RedisBatches
from app.services.intake.reporting import Reporter
from app.services.intake.routing import Router
from app.services.intake.scope import Batched, Decisions, PerRequest, Scope, Transactional
from app.services.loop_lag import LoopLag
from app.services.policy.cache import PolicyCache
from app.services.policy.published import PublishedVersion
from app.services.policy.starter import install_starter_policy
from app.services.resilience import Outage
from app.services.resilience.entries import entry_key
from app.services.resilience.errors import is_outage
from app.services.resilience.local import LocalDecider
from app.services.resilience.outage import decision_budget
from app.services.resilience.replay import TOGETHER, Replayer
from app.settings import Settings
from app.sinch.signature import SignatureVerifier, decode_secret
from app.store.base import create_engine, create_reader, create_sessionmaker
from app.store.counter_model import CounterBackend
from app.store.counters import SqlCounters
from app.store.group_commit import OTHERS_GRACE, GroupCommit
from app.store.held import HeldConnections
from app.store.memory_counters import MemoryCounters
from app.store.migrate import require_head
from app.store.pg_outcomes import Write, Written, write_outcomes
from app.store.policy import policy_version
from app.store.policy_version_key import PolicyVersionKey
from app.store.recovery import Prober
from app.store.redis_counters import RedisCounters
from app.store.spool import Spool
from app.web import close_console, install_console, warm_up_task
from app.web.overview_cache import Engines

log = structlog.get_logger()


def sinch_apps(settings: Settings) -> dict[str, bytes]:
    """Configured apps; in development with none configured, the local development app."""
    apps = settings.app_secrets()
    if not apps and settings.environment == "development":
        key, secret = load_or_create_dev_app(settings.dev_app_file)
        log.info("devapp.ready", key=key, file=str(settings.dev_app_file))
        apps = {key: decode_secret(secret)}
    return apps


def counter_backend(settings: Settings, *, checks_version: bool = False) -> CounterBackend:
    """Redis when configured (shared by every worker and host), else the SQL database.
    `checks_version`: Redis's counting script checks the policy's version (its key kept by
    `PublishedVersion`)."""
    if settings.redis_url:
        return RedisCounters(
            Redis.from_url(settings.redis_url),
            bucket_seconds=settings.counter_bucket_seconds,
            retention_seconds=settings.counter_retention_seconds,
            prefix=settings.counter_prefix,
            checks_version=checks_version,
        )
    return SqlCounters(settings.counter_bucket_seconds)


def published_version(engine: AsyncEngine, backend: CounterBackend) -> PublishedVersion | None:
    """Where Redis's counting script checks the policy's version: what keeps its key."""
    if not (isinstance(backend, RedisCounters) and backend.capabilities.checks_policy_version):
        return None
    return PublishedVersion(engine, PolicyVersionKey(backend.redis, prefix=backend.prefix))


def build_runtime(settings: Settings) -> Runtime:
    """The composition root: every long-lived object, each handed what it needs."""
    engine, counter_engine, held = _engines(settings)
    batched = held is not None  # group commit on PostgreSQL (counters inside or in Redis)
    lanes = 1 if held is None else settings.database_pool_size
    target = TARGET_SHARE * decision_budget(settings.decision_deadline_ms)
    lag = LoopLag()
    admission = Admission(lanes=lanes, whole=batched, lag=lag, target=target)
    counting = admission.timed(counting_scope(engine, held))
    reporter = Reporter(metrics=Metrics())
    policies = PolicyCache(
        default_action=settings.default_action,
        timezone=settings.timezone,
        on_loaded=reporter.metrics.policy_loads.inc,
    )
    # With the decisions in PostgreSQL, counters in Redis check the policy's version there
    # (intake/redis_batches.py); on SQLite each request reads it in its transaction.
    aggregator = Aggregator(counter_backend(settings, checks_version=held is not None))
    published = published_version(engine, aggregator.backend)
    # Read when scraped: nothing on the request path.
    reporter.metrics.admission_shed_share.set_function(lambda: admission.shedding)
    reporter.metrics.event_loop_lag.set_function(lambda: lag.floor)
    baselines = BaselineCache()
    shared = _Shared(
        settings, engine, counting, admission, policies, aggregator, reporter, baselines, published
    )
    group = _group_commit(shared)
    outcomes = Outcomes(
        writes=group or Transactional(engine),
        credit=None if group else PerRequest(counting),
        policies=policies,
        aggregator=aggregator,
        batch=_outcome_batch(settings, engine, reporter),
    )
    router = Router(engine=engine, outcomes=outcomes)
    engines = [e for e in (engine, counter_engine) if e is not None]
    replays = group or PerRequest(counting)
    outage = _outage(shared, engines=engines, callbacks=router, decisions=replays)
    return Runtime(
        settings=settings,
        engine=engine,
        reader=create_reader(engine),
        counter_engine=counter_engine,
        held=held,
        counting=counting,
        sessions=create_sessionmaker(engine),
        verifier=SignatureVerifier(sinch_apps(settings), tolerance=settings.timestamp_tolerance),
        policies=policies,
        aggregator=aggregator,
        intake=_intake(
            shared,
            router=router,
            outage=outage,
            decisions=_decisions(shared, group, held),
        ),
        outage=outage,
        metrics=shared.reporter.metrics,
        alerts=AlertJobs(
            engine=engine, settings=settings, policies=policies, metrics=shared.reporter.metrics
        ),
        baselines=baselines,
        backtests=_backtests(settings, engine),
        published=published,
    )


def _backtests(settings: Settings, engine: AsyncEngine) -> Backtests:
    """Backtests replay in child processes on their own connections to the same database."""
    defaults = BacktestDefaults(
        default_action=settings.default_action,
        timezone=settings.timezone,
        bucket_seconds=settings.counter_bucket_seconds,
    )
    return Backtests(engine=engine, database_url=settings.database_url, defaults=defaults)


@dataclass(frozen=True, slots=True)
class _Shared:
    """What the intake and resilience services are built from."""

    settings: Settings
    engine: AsyncEngine
    counting: Counting
    admission: Admission
    policies: PolicyCache
    aggregator: Aggregator
    reporter: Reporter
    baselines: BaselineCache
    published: PublishedVersion | None


def _engines(settings: Settings) -> tuple[AsyncEngine, AsyncEngine | None, HeldConnections | None]:
    """The engine for transactions; on PostgreSQL also the autocommit pool request events
    run on, and the connections held open on it."""
    url, pool_size = settings.database_url, settings.database_pool_size
    timeout = settings.database_connect_timeout_seconds
    engine = create_engine(url, pool_size=max(4, pool_size // 4), connect_timeout=timeout)
    if settings.is_sqlite:
        return engine, None, None
    counter_engine = create_engine(
        url, pool_size=pool_size, autocommit=True, connect_timeout=timeout
    )
    return engine, counter_engine, HeldConnections(counter_engine, pool_size)


def _outage(
    shared: _Shared, *, engines: list[AsyncEngine], callbacks: Router, decisions: Scope
) -> Outage:
    """The breaker, with its local decider (counting in memory), spool, replay and probe;
    spooled decisions are replayed into `decisions` (SQLite: the group commit, TOGETHER at
    once; elsewhere one at a time, each on a connection of its own)."""
    settings = shared.settings
    spool = Spool(settings.spool_dir / "spool.db", key_of=entry_key)
    replayer = Replayer(
        spool=spool,
        decisions=decisions,
        together=TOGETHER if isinstance(decisions, GroupCommit) else 1,
        admission=shared.admission,
        policies=shared.policies,
        aggregator=shared.aggregator,
        metrics=shared.reporter.metrics,
        callbacks=callbacks,
    )
    counters = MemoryCounters(settings.counter_bucket_seconds, settings.counter_retention_seconds)
    local = LocalDecider(
        settings=settings,
        policies=shared.policies,
        counters=counters,
        aggregator=Aggregator(counters),
        baselines=shared.baselines,
    )
    prober = Prober(
        settings.database_url, connect_timeout=settings.database_connect_timeout_seconds
    )
    return Outage(
        settings=settings,
        engines=engines,
        spool=spool,
        local=local,
        replayer=replayer,
        prober=prober,
        reporter=shared.reporter,
    )


def _group_commit(shared: _Shared) -> GroupCommit | None:
    """SQLite with its counters inside: callbacks share transactions on the writer's
    thread (store/group_commit.py); elsewhere each has its own (intake/scope.py)."""
    if not shared.settings.is_sqlite or shared.settings.redis_url:
        return None
    batch_size, admission = shared.reporter.metrics.batch_size, shared.admission

    def on_batch(size: int, inner: float, seconds: float) -> None:
        batch_size.observe(size)
        admission.record(size, inner, overhead=max(0.0, seconds - inner))

    grace = shared.settings.store_deadline_ms / 1000 * OTHERS_GRACE
    return GroupCommit(shared.engine, on_batch=on_batch, prologue=policy_version, grace=grace)


def _decisions(
    shared: _Shared, group: GroupCommit | None, held: HeldConnections | None
) -> Decisions:
    """SQLite: the writer's group commit; PostgreSQL (`held`): request events batched into
    shared statements (intake/lanes.py; with Redis counters intake/redis_batches.py), and
    admission measures whole decisions (services/admission.py: `whole`): a newcomer waits
    for the batches ahead and for turns of a busy event loop, whatever the batches' size (a
    batch's seconds per decision grew as shedding shrank the batches: lock-in again).
    Otherwise (SQLite with Redis counters) each on a connection of its own."""
    if group is not None:
        return Batched(group)
    if held is None:
        return PerRequest(shared.counting)
    metrics = shared.reporter.metrics

    def on_counted(size: int, seconds: float) -> None:
        metrics.count_batch_size.observe(size)

    def on_stored(size: int, seconds: float) -> None:
        metrics.batch_size.observe(size)

    if shared.published is not None:
        missed = metrics.version_misses.inc
        return RedisBatches(held.lend, shared.published, on_stored=on_stored, on_missed=missed)
    clock = shared.aggregator.backend.clock
    return PgBatches(held.lend, clock, on_counted=on_counted, on_stored=on_stored)


def _outcome_batch(
    settings: Settings, engine: AsyncEngine, reporter: Reporter
) -> Batcher[Write, Written] | None:
    """PostgreSQL: results and receipts that arrive together share a transaction
    (store/pg_outcomes.py); SQLite shares its writer's (store/group_commit.py)."""
    if settings.is_sqlite:
        return None
    return Batcher(
        partial(write_outcomes, engine),
        name="verifyguard-outcomes",
        on_batch=reporter.metrics.outcome_batch_size.observe,
        split=lambda exc: not is_outage(exc),
    )


def _intake(shared: _Shared, *, router: Router, outage: Outage, decisions: Decisions) -> Intake:
    decider = Decider(
        scope=decisions,
        settings=shared.settings,
        policies=shared.policies,
        aggregator=shared.aggregator,
        outage=outage,
        reporter=shared.reporter,
        admission=shared.admission,
        baselines=shared.baselines,
    )
    return Intake(
        engine=shared.engine,
        settings=shared.settings,
        router=router,
        decider=decider,
        outage=outage,
        reporter=shared.reporter,
    )


def retention_task(runtime: Runtime) -> asyncio.Task[None] | None:
    """Automatic retention, when VERIFYGUARD_RETENTION_DAYS or ..._ANONYMIZE_AFTER_DAYS is set."""
    settings = runtime.settings
    if not (settings.retention_days or settings.anonymize_after_days):
        return None
    key = settings.anonymize_key.get_secret_value().encode() if settings.anonymize_key else None
    work = retention.run_periodically(
        runtime.engine,
        interval=settings.retention_interval_seconds,
        retention_days=settings.retention_days,
        counter_retention=timedelta(seconds=settings.counter_retention_seconds),
        anonymize_after_days=settings.anonymize_after_days,
        key=key,
        now=lambda: datetime.now(UTC),
        paused=lambda: runtime.outage.down,
        metrics=runtime.metrics,
        busy=lambda: runtime.outage.admission.busy,
    )
    return asyncio.create_task(work, name="verifyguard-retention")


def rollup_task(runtime: Runtime) -> asyncio.Task[None] | None:
    """The hourly stats rollup, kept current in the background (stats queries do it too)."""
    interval = runtime.settings.stats_rollup_interval_seconds
    if not interval:
        return None
    work = stats_rollup.run_periodically(
        runtime.engine,
        runtime.reader,
        interval=interval,
        now=lambda: datetime.now(UTC),
        paused=lambda: runtime.outage.down,
        busy=lambda: runtime.outage.admission.busy,
    )
    return asyncio.create_task(work, name="verifyguard-stats-rollup")


def baseline_task(runtime: Runtime) -> asyncio.Task[None]:
    """Adaptive limits' verified baselines, refreshed in the background."""
    work = baseline_refresh.run_periodically(
        runtime.reader,
        runtime.policies,
        runtime.baselines,
        interval=runtime.settings.baseline_refresh_seconds,
        now=lambda: datetime.now(UTC),
        paused=lambda: runtime.outage.down,
        busy=lambda: runtime.outage.admission.busy,
    )
    return asyncio.create_task(work, name="verifyguard-baselines")


def published_task(runtime: Runtime) -> asyncio.Task[None] | None:
    """The policy's version in Redis kept to the database's (services/policy/published.py)."""
    if runtime.published is None:
        return None
    work = runtime.published.run_periodically(paused=lambda: runtime.outage.down)
    return asyncio.create_task(work, name="verifyguard-policy-version")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(json_logs=settings.json_logs, level=settings.log_level)
    request_ids = RequestIds()
    app = callbacks.CallbackFirst(
        callback_path=settings.callback_path,
        request_ids=request_ids,
        title="VerifyGuard",
        version="0.1.0",
        lifespan=_lifespan(settings),
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit)  # inside RequestIdMiddleware: its 413 carries the id
    app.add_middleware(RequestIdMiddleware, ids=request_ids)
    # Served ahead of the router (CallbackFirst); declared for the OpenAPI document.
    app.add_api_route(
        settings.callback_path,
        callbacks.sinch_event,
        methods=["POST"],
        tags=["sinch"],
        summary="Receive a Sinch Verification event",
        responses=callbacks.RESPONSES,
        openapi_extra=callbacks.REQUEST_BODY,
    )
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(admin.router)
    app.include_router(audit.router)
    install_console(app, settings)
    install_openapi(app, models=callbacks.SCHEMAS)
    return app


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Each run of the app builds its runtime, starts it, and stops it (even if starting failed)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings)
        app.state.runtime = runtime
        background: list[asyncio.Task[None] | None] = []
        try:
            background = await _start(runtime)
            background.append(warm_up_task(app, Engines(runtime.engine, runtime.reader)))
            with server_gc():
                log.info("app.started", callback_path=settings.callback_path)
                yield
        finally:
            await close_console(app)
            await _stop(runtime, background)

    return lifespan


async def _start(runtime: Runtime) -> list[asyncio.Task[None] | None]:
    """The runtime opened; the background jobs, started."""
    await open_runtime(runtime, now=datetime.now(UTC))
    await runtime.alerts.start(paused=lambda: runtime.outage.down)
    return [
        retention_task(runtime),
        rollup_task(runtime),
        baseline_task(runtime),
        published_task(runtime),
    ]


async def open_runtime(runtime: Runtime, *, now: datetime) -> None:
    """Schema checked, starter policy, current policy and baselines loaded, intake and
    counters open (the simulator's virtual clock opens one without background jobs)."""
    await require_head(runtime.engine)
    await install_starter_policy(runtime.engine, now=now)
    async with runtime.engine.connect() as conn:
        await runtime.policies.current(conn)
    await baseline_refresh.refresh_live(runtime.reader, runtime.policies, runtime.baselines, now)
    await runtime.intake.start()
    await runtime.aggregator.start()
    if runtime.published is not None:
        await runtime.published.publish()
    if runtime.held is not None:
        await runtime.held.open()


async def _stop(runtime: Runtime, background: list[asyncio.Task[None] | None]) -> None:
    for task in background:
        if task is not None:
            task.cancel()
    await runtime.backtests.close()
    await runtime.alerts.stop()
    await close_runtime(runtime)


async def close_runtime(runtime: Runtime) -> None:
    await runtime.intake.close()
    log.info("app.stopped", spool_depth=runtime.outage.spool.depth)
    await runtime.aggregator.close()
    if runtime.held is not None:
        await runtime.held.close()
    await runtime.engine.dispose()
    if runtime.reader is not runtime.engine:
        await runtime.reader.dispose()
    if runtime.counter_engine is not None:
        await runtime.counter_engine.dispose()
