"""The PostgreSQL settings recommended for production are written once
(bench/postgres_settings.py); docker-compose.yml's postgres service and the table in
docs/operations.md must say the same, or one of them is stale."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from bench.postgres_settings import SETTINGS, options

ROOT = Path(__file__).resolve().parents[2]
HEADING = "### PostgreSQL settings for production"
ROW = re.compile(r"^\| `([a-z_]+)` \| `([^`]+)` \|")


def _documented() -> dict[str, str]:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split(HEADING, 1)[1].split("\n#", 1)[0]
    rows = (ROW.match(line) for line in section.splitlines())
    return {m[1]: m[2] for m in rows if m}


def test_compose_postgres_runs_on_the_recommended_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert shlex.split(compose["services"]["postgres"]["command"]) == ["postgres", *options()]


def test_operations_guide_documents_the_recommended_settings() -> None:
    assert _documented() == SETTINGS
