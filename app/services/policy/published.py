"""The live policy's version, kept in Redis beside the counters for their script to check.

With the counters in Redis and the decisions in PostgreSQL, a request event is counted
under the policy compiled last only if Redis holds that policy's version
(store/policy_version_key.py): one round trip, where reading the version from PostgreSQL
first took one more. The database stays the truth; the key follows it:

- A change made through the API, the console or the CLI raises the key once its
  transaction committed (`publish`), before the change is answered: a request event that
  arrives after the answer is decided under the new policy, on every worker and host.
- A request event that finds the key missing or at another version reads the version from
  the database, raises the key to it and is decided under it (intake/redis_batches.py).
- Every `RECONCILE_SECONDS`, each process compares the two (`reconcile`): a change made
  past VerifyGuard (SQL, a CLI run without the Redis URL) is raised to within that time; a
  key ahead of the database (the database restored from a backup) is lowered to it, while
  holding the policy's lock so that no change commits meanwhile.

The key is only ever raised to a committed version, so it is never behind a change that
was answered; it is never ahead but after a restore (until the next reconcile, each
request event reads the version from the database, as before, and is decided right).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.services.periodic import every
from app.store.policy import policy_version
from app.store.policy_version_key import PolicyVersionKey

log = structlog.get_logger()

RECONCILE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class PublishedVersion:
    engine: AsyncEngine
    key: PolicyVersionKey

    async def publish(self) -> int:
        """After a change committed: the key raised to the database's version; that version."""
        async with self.engine.connect() as conn:
            version = await policy_version(conn)
        await self.key.raise_to(version)
        return version

    async def changed(self) -> None:
        """After a change committed, before it is answered: `publish`. Failing that (Redis or
        the database away), logged: the change is made, and the reconcile of some worker
        raises the key within RECONCILE_SECONDS of their coming back."""
        try:
            await self.publish()
        except Exception:
            log.warning("policy.version_publish_failed", exc_info=True)

    async def reconcile(self) -> None:
        """The key made the database's version (see the module docstring)."""
        async with self.engine.connect() as conn:
            version = await policy_version(conn)
        kept = await self.key.raise_to(version)
        if kept <= version:
            return
        async with self.engine.begin() as conn:
            version = await policy_version(conn, for_update=True)
            if (await self.key.get() or 0) > version:
                await self.key.lower_to(version)
                log.warning("policy.version_lowered", kept=kept, version=version)

    async def run_periodically(self, *, paused: Callable[[], bool]) -> None:
        """`reconcile` every RECONCILE_SECONDS until cancelled."""
        failed = "policy.version_reconcile_failed"
        await every(RECONCILE_SECONDS, self.reconcile, paused=paused, failed=failed)
