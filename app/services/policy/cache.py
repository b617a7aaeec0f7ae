"""The live policy: loaded from the store, compiled once per change, shared by all requests.

Each request reads the policy version inside its own transaction; a different version
than the one compiled here means another worker (or this one) changed it: reload. The
active containments ride along on the compiled policy (`contain`).

A change reaches every request event in flight at once: each finds the version moved.
They share one load (`current`): the first loads and compiles it, and the others wait for
that. Each used to load and compile its own, and with long lists a load is much of a
second of the event loop (a policy with two lists of 20,000 numbers: ~0.5 s on this
project's machine), so 64 in flight held it for tens of seconds after every edit.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.containment import NONE, Containments
from app.rules.engine import CompiledPolicy, compile_policy
from app.rules.model import Action, Policy
from app.services.policy.held_lists import HeldLists
from app.store import policy as policy_store
from app.store.policy_rows import PolicyList
from app.store.thread_connection import ThreadConnection

Lend = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


class PolicyCache:
    def __init__(
        self,
        *,
        default_action: Action,
        timezone: str,
        on_loaded: Callable[[], None] | None = None,
    ) -> None:
        self._default_action = default_action
        self._timezone = timezone
        self._on_loaded = on_loaded
        self._compiled: CompiledPolicy | None = None
        self._version = -1
        self._containments = NONE
        self.lists = HeldLists()
        """The lists of the last load, reused by the next where they did not change."""
        # Loads under way, by version: None once one failed (its waiters load their own).
        self._loading: dict[int, asyncio.Future[CompiledPolicy | None]] = {}

    def contain(self, containments: Containments) -> None:
        """Make `containments` the active ones (from the containment watcher): attached to the
        compiled policy, so the request path looks them up in memory."""
        self._containments = containments
        if self._compiled is not None:
            self._compiled = dataclasses.replace(self._compiled, containments=containments)

    @property
    def loaded(self) -> CompiledPolicy | None:
        """The last compiled policy, for use when the database cannot be reached."""
        return self._compiled

    async def current(self, conn: AsyncConnection, *, version: int | None = None) -> CompiledPolicy:
        """The live policy; `version`, when given, is its version as `conn` read it already.

        A load of that version under way is waited for, not repeated. Not on SQLite's writer
        (a `ThreadConnection`), where nothing may wait (store/group_commit.py): its works
        load at once, and the first of a batch leaves the policy compiled for the rest."""
        if version is None:
            version = await policy_store.policy_version(conn)
        if self._compiled is not None and version == self._version:
            return self._compiled
        if isinstance(conn, ThreadConnection):
            return await self._load(conn, version)
        compiled = await self._once(version, lambda: self._load(conn, version))
        # None: the load waited for failed (or found the database elsewhere): load on `conn`
        return compiled if compiled is not None else await self._load(conn, version)

    async def at(self, version: int, lend: Lend) -> CompiledPolicy | None:
        """The policy at `version`, a version known without reading the database (Redis keeps
        the committed one: intake/redis_batches.py): the one compiled, or a load of it under
        way waited for; else loaded on a connection from `lend`, taken for the load alone.
        None if the database is not at `version` (the key ahead of a restored database, or
        behind a change made in SQL): the caller reads the version itself."""
        if self._compiled is not None and version == self._version:
            return self._compiled

        async def load() -> CompiledPolicy | None:
            async with lend() as conn:
                if await policy_store.policy_version(conn) != version:
                    return None
                return await self._load(conn, version)

        return await self._once(version, load)

    async def _once(
        self, version: int, load: Callable[[], Awaitable[CompiledPolicy | None]]
    ) -> CompiledPolicy | None:
        """`load` run by the first caller for `version`; those that come while it runs wait
        for its result (None: it failed, or found the database at another version)."""
        loading = self._loading.get(version)
        if loading is not None:
            # Shielded: a waiter cancelled (shutdown) leaves the load to the others.
            shared = await asyncio.shield(loading)
            fresher = self._compiled if self._version == version else None  # contain()'s
            return fresher if shared is not None and fresher is not None else shared
        loading = asyncio.get_running_loop().create_future()
        self._loading[version] = loading  # before the first await: the others find it
        compiled = None
        try:
            compiled = await load()
        finally:
            del self._loading[version]
            loading.set_result(compiled)
        return compiled

    async def _load(self, conn: AsyncConnection, version: int) -> CompiledPolicy:
        policy = await live_policy(
            conn, default_action=self._default_action, timezone=self._timezone, held=self.lists
        )
        compiled = compile_policy(policy, version=version, previous=self._compiled)
        compiled = dataclasses.replace(compiled, containments=self._containments)
        if version >= self._version:  # a slower reload of an older version stays its own
            self._compiled, self._version = compiled, version
        if self._on_loaded is not None:
            self._on_loaded()
        return compiled


async def live_policy(
    conn: AsyncConnection,
    *,
    default_action: Action,
    timezone: str = "UTC",
    held: HeldLists | None = None,
) -> Policy:
    """The stored policy (`default_action` applies when none was ever set); its lists
    through `held` if given, which reuses those of its load before (held_lists.py)."""
    loaded = await policy_store.load_policy_rows(conn, with_lists=held is None)
    named: list[Any] = (
        await held.load(conn)
        if held is not None
        else [_list_document(named) for named in loaded.lists]
    )
    return Policy.model_validate(
        {
            "rules": [rule.loaded() for rule in loaded.rules],
            "lists": named,
            "default_action": loaded.default_action or default_action,
            "timezone": timezone,
            **(loaded.alerting or {}),
        }
    )


def _list_document(named: PolicyList) -> dict[str, Any]:
    """`asdict(named)` without its deep copy of each entry (~0.3 s for 40,000)."""
    return {
        "name": named.name,
        "kind": named.kind,
        "description": named.description,
        "entries": [
            {"value": e.value, "note": e.note, "expires_at": e.expires_at} for e in named.entries
        ],
    }
