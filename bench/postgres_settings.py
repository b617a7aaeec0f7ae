"""The PostgreSQL settings recommended for VerifyGuard in production, in one place: the
private cluster of `bench.soak --private-postgres` runs on them, docker-compose.yml's
postgres service passes them as `-c` options and docs/operations.md ("PostgreSQL settings
for production") gives each one's reason; tests/ops/test_postgres_settings.py holds the
three together. Sized for a host with 8 GB of memory for PostgreSQL (scale the first two).
"""

from __future__ import annotations

SETTINGS: dict[str, str] = {
    # The random-key B-trees (dedupe keys, verification ids, per-number counter keys) are
    # the working set: with 128 MB the soak's database outgrew the buffers in minute 2.
    "shared_buffers": "2GB",
    "effective_cache_size": "6GB",
    # Fewer checkpoints: each is followed by full-page images of every page changed again.
    "max_wal_size": "8GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    # Full-page images were up to 45 % of the soak's WAL; lz4 needs PostgreSQL 15 or later.
    "wal_compression": "lz4",
    # Kept as they are: an answer leaves only once its decision is durable, and a torn page
    # after a crash is not repaired without full-page writes.
    "synchronous_commit": "on",
    "full_page_writes": "on",
    # The hot counter rows' dead versions and the new tables' statistics need it.
    "autovacuum": "on",
}


def options() -> list[str]:
    """The settings as `postgres` command-line options: `-c name=value` pairs."""
    return [part for name, value in SETTINGS.items() for part in ("-c", f"{name}={value}")]
