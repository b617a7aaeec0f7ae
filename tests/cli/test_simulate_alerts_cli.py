"""`verifyguard simulate --virtual --alerts … --webhook-port …`: the example alerts put into the
policy, their webhooks received over real HTTP with verified signatures, and the report says
when the attack was alerted and contained."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from typer.testing import CliRunner

from app.cli import cli

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "alerts.yaml"
SECRET = "whsec_dmVyaWZ5Z3VhcmQtc2ltdWxhdG9yLWRlbW8h"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_number_abuse_is_alerted_and_contained_within_a_minute(tmp_path: Path) -> None:
    port = _free_port()
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text(EXAMPLE.read_text().replace("127.0.0.1:8099", f"127.0.0.1:{port}"))
    args = ["simulate", "--scenario", "number-abuse", "--duration", "60", "--rate", "5"]
    args += ["--virtual", f"sqlite+aiosqlite:///{tmp_path}/sim.db", "--alerts", str(alerts)]
    args += ["--webhook-port", str(port), "--webhook-secret", SECRET, "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    alerting = report["alerts"]
    assert alerting["rejected"] == 0 and alerting["false_alarms"] == []
    assert alerting["legit_in_containments"] == 0
    attack = alerting["by_attack"]["number-abuse"]
    assert attack["first_alert"].startswith("number-denied number +")
    assert 0 < attack["first_alert_after_s"] <= 60
    assert attack["first_containment_after_s"] == attack["first_alert_after_s"]
    assert report["by_label"]["fraud"]["attempts"] > 10


def test_the_webhook_port_needs_its_secret(tmp_path: Path) -> None:
    args = ["simulate", "--virtual", f"sqlite+aiosqlite:///{tmp_path}/x.db"]
    result = CliRunner().invoke(cli, [*args, "--webhook-port", "8099"])
    assert result.exit_code == 2
    assert "--webhook-secret" in result.output
