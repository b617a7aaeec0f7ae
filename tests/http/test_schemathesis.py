"""Schemathesis over /openapi.json against a real server, on SQLite and on PostgreSQL, as an
admin and as an auditor: every phase (examples, coverage, fuzzing, stateful over the rules'
and lists' links). Fails on a 5xx, an undocumented status, content type or header, a body
that breaks its schema, or any answer slower than 1 s.

Each run has a time budget (RUN_SECONDS); the four add about a minute to the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.http.live import BOOTSTRAP, auditor_token, serve

ROOT = Path(__file__).resolve().parents[2]
RUN_SECONDS = 8
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def _schemathesis(base: str, token: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{base}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--max-response-time",
        "1",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "10",
        "--max-time",
        str(RUN_SECONDS),
        "--workers",
        "1",
        "--seed",
        "16",
        "--no-color",
        "--generation-database",
        "none",
    ]
    env = os.environ | {"SCHEMATHESIS_HOOKS": "tests.http.st_hooks", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_SECONDS * 10
    )


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_schemathesis_finds_nothing(database_url: str, tmp_path: Path, role: str) -> None:
    token = BOOTSTRAP if role == "admin" else auditor_token(database_url)
    with serve(database_url, tmp_path) as base:
        run = _schemathesis(base, token, tmp_path)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
