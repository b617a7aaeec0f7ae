"""The live policy as the alert jobs read it: loaded and validated once per policy version.

Evaluation runs every few seconds and delivery whenever a notification is due; each read the
whole stored policy (rules, lists and their entries, alerting) and validated it, a few
milliseconds of CPU in one step of the event loop that serves the callbacks (more with long
lists), every time. Every policy change bumps the version (store/policy.py), so a version
read in the same transaction says whether the last one loaded is still the live one.

In the server, the alert jobs read the request path's policy (`PolicyCache`): one load per
version for the process, where each used to load its own copy after every change.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from app.rules.model import Action, Policy
from app.services.policy.cache import PolicyCache, live_policy
from app.store import policy as policy_store


class LivePolicy:
    """The stored policy, reloaded only when its version changed."""

    def __init__(self, *, default_action: Action, policies: PolicyCache | None = None) -> None:
        self._default_action = default_action
        self._policies = policies
        self._loaded: tuple[int, Policy] | None = None

    async def read(self, conn: AsyncConnection) -> Policy:
        """The live policy as `conn` sees it (its version read first, in its transaction)."""
        version = await policy_store.policy_version(conn)
        if self._loaded is not None and self._loaded[0] == version:
            return self._loaded[1]
        if self._policies is not None:
            return (await self._policies.current(conn, version=version)).policy
        policy = await live_policy(conn, default_action=self._default_action)
        self._loaded = (version, policy)
        return policy
