"""A private PostgreSQL cluster for a bench run: `initdb` into a temporary directory, started
with `pg_ctl` on loopback at a port of BENCH_PORTS with trust authentication, stopped and
removed when the block ends, on an error or Ctrl-C too (`bench.soak --private-postgres`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from bench import procs

BIN = Path(os.environ.get("VERIFYGUARD_PG_BIN", "/usr/lib/postgresql/15/bin"))
OWNER = "postgres"  # initdb refuses to run as root: as root, the cluster is this user's


@contextmanager
def private_cluster(
    settings: Mapping[str, str], *, port: int = 0, bin_dir: Path = BIN
) -> Iterator[str]:
    """A cluster running on `settings` until the block ends; its superuser's DSN."""
    root = Path(tempfile.mkdtemp(prefix="vg-pg-"))
    data = root / "data"
    try:
        if os.geteuid() == 0:
            shutil.chown(root, OWNER)
        _run(bin_dir / "initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
        port = port or procs.free_port()
        local = {"port": str(port), "listen_addresses": "127.0.0.1"}
        local["unix_socket_directories"] = str(root)
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{k} = '{v}'\n" for k, v in {**settings, **local}.items())
        try:
            _start(bin_dir, data, root / "log")
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            if (data / "postmaster.pid").exists():
                _run(bin_dir / "pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop", check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(bin_dir: Path, data: Path, log: Path) -> None:
    try:
        _run(bin_dir / "pg_ctl", "-D", str(data), "-l", str(log), "-w", "start")
    except RuntimeError as error:  # its log is removed with the directory: say what it says
        raise RuntimeError(f"{error}{log.read_text() if log.exists() else ''}") from None


def _run(*command: str | Path, check: bool = True) -> None:
    prefix = ["runuser", "-u", OWNER, "--"] if os.geteuid() == 0 else []
    done = subprocess.run(  # noqa: S603 - PostgreSQL's own programs, our arguments
        [*prefix, *map(str, command)], capture_output=True, text=True, check=False
    )
    if check and done.returncode:
        raise RuntimeError(f"{Path(command[0]).name} failed: {done.stdout}{done.stderr}")
