"""`bench.soak --private-postgres`'s cluster, for real: initdb, started on the recommended
settings, reachable, then stopped and removed, also when the block ends in an error. Each
test takes 0.7 s on a quiet machine, ~3 s on a loaded one (initdb without fsync, start,
stop), so they run with the suite; skipped where PostgreSQL's server programs are missing."""

from __future__ import annotations

import socket
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from bench.pg_cluster import BIN, private_cluster
from bench.postgres_settings import SETTINGS

pytestmark = pytest.mark.skipif(
    not (BIN / "initdb").exists(), reason=f"no PostgreSQL server programs in {BIN}"
)


class Stop(Exception):
    pass


async def _inspect(dsn: str) -> tuple[dict[str, str], Path, int]:
    conn = await asyncpg.connect(dsn)
    try:
        found = {name: await conn.fetchval(f"SHOW {name}") for name in SETTINGS}
        data = Path(await conn.fetchval("SHOW data_directory"))
        port = int(await conn.fetchval("SHOW port"))
    finally:
        await conn.close()
    return found, data, port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_private_cluster_runs_on_the_settings_and_is_removed_after() -> None:
    with private_cluster(SETTINGS) as dsn:
        found, data, port = await _inspect(dsn)
        assert found == SETTINGS
        assert data.is_dir()
    assert not data.parent.exists()
    assert not _listening(port)


async def test_private_cluster_is_stopped_and_removed_when_the_block_fails() -> None:
    seen: list[tuple[Path, int]] = []

    async def fail() -> None:
        with private_cluster(SETTINGS) as dsn:
            _, data, port = await _inspect(dsn)
            seen.append((data, port))
            raise Stop

    with pytest.raises(Stop):
        await fail()
    [(data, port)] = seen
    assert not data.parent.exists()
    assert not _listening(port)
