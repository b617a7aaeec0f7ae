"""Processes for a bench run: a uvicorn server on loopback, and CPU time read from /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free local port: any, or the first free one of BENCH_PORTS (e.g. `8500-8509`) on a
    machine where each user of it keeps to a range of its own."""
    low, _, high = os.environ.get("BENCH_PORTS", "0").partition("-")
    for candidate in range(int(low), int(high or low) + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
            return port
    raise RuntimeError(f"no free port in BENCH_PORTS={os.environ['BENCH_PORTS']}")


VERIFYGUARD_FACTORY = "app.main:create_app"
BASELINE_MODULE = "bench.baseline:"


@contextmanager
def uvicorn_server(
    factory: str,
    *,
    port: int,
    env: Mapping[str, str],
    log: Path,
    cwd: Path,
    app_dir: Path,
    listeners: int | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """One uvicorn worker serving `factory` (module:function) until the block ends; `cwd`
    keeps a developer's `.env` out, `app_dir` is where `factory` is imported from. The bare
    baselines on uvloop, one socket; VerifyGuard and the benches' wrappers of it as that
    checkout's `verifyguard serve` serves (bench/serve_app.py), on `listeners` sockets if
    given."""
    if factory.startswith(BASELINE_MODULE):
        command = [sys.executable, "-m", "uvicorn", factory, "--factory", "--host", "127.0.0.1"]
        command += ["--app-dir", str(app_dir), "--port", str(port), "--workers", "1"]
        command += ["--no-access-log", "--log-level", "warning", "--loop", "uvloop"]
        command += ["--http", "httptools"]
    else:
        launcher = Path(__file__).with_name("serve_app.py")
        command = [sys.executable, str(launcher), factory, "--app-dir", str(app_dir)]
        command += ["--port", str(port)] + (["--listeners", str(listeners)] if listeners else [])
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, env={**os.environ, **env}, cwd=cwd, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            _wait_listening(port, process)
            yield process
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()  # it had its graceful shutdown; the figures are already taken
        process.wait(timeout=15)


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see its log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not listen on port {port} within {timeout:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    return sum(user_system(pid))


def read_calls(pid: int) -> int:
    """Read system calls a process has made (/proc/<pid>/io `syscr`): on SQLite, each page
    the page cache missed is one, counted whatever the machine's load."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    raise ValueError("no syscr in /proc/<pid>/io")


def user_system(pid: int) -> tuple[float, float]:
    """User and system CPU seconds a process has used, apart."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of each local process named postgres (the server and its backends)."""
    return named_cpu("postgres")


def redis_cpu() -> dict[int, float]:
    """CPU seconds of each local Redis server (all of them: the redis target's and any other)."""
    return named_cpu("redis-server")


def named_cpu(name: str) -> dict[int, float]:
    """CPU seconds of each local process whose command name is `name`."""
    usage: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == name:
                usage[int(entry.name)] = cpu_seconds(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    return usage


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two snapshots by the processes alive at the second one."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
