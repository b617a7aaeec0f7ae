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


def test_slow_pumping_at_one_a_second_is_contained_at_its_first_costly_attempt(
    tmp_path: Path,
) -> None:
    """Seed 2 at --rate 1: the second attempt to FJ comes 59 s after the first, so only an
    alert on the first costly attempt to a dead destination fires within the minute."""
    port = _free_port()
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text(EXAMPLE.read_text().replace("127.0.0.1:8099", f"127.0.0.1:{port}"))
    args = ["simulate", "--scenario", "slow-pumping", "--duration", "90", "--rate", "1"]
    args += ["--seed", "2", "--virtual", f"sqlite+aiosqlite:///{tmp_path}/sim.db"]
    args += ["--alerts", str(alerts), "--webhook-port", str(port), "--webhook-secret", SECRET]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    alerting = json.loads(result.stdout.strip().splitlines()[-1])["alerts"]
    assert alerting["false_alarms"] == [] and alerting["legit_in_containments"] == 0
    attack = alerting["by_attack"]["slow-pumping"]
    assert attack["first_alert"].startswith("dead-costly-destination country FJ")
    assert 0 < attack["first_alert_after_s"] <= 60
    assert attack["first_containment_after_s"] == attack["first_alert_after_s"]
    assert attack["first_proposal_after_s"] is None
    assert attack["inside_containment"] == attack["after_containment"] > 0


def test_the_webhook_port_needs_its_secret(tmp_path: Path) -> None:
    args = ["simulate", "--virtual", f"sqlite+aiosqlite:///{tmp_path}/x.db"]
    result = CliRunner().invoke(cli, [*args, "--webhook-port", "8099"])
    assert result.exit_code == 2
    assert "--webhook-secret" in result.output
