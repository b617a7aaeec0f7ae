"""`verifyguard rules` and `lists` against a SQLite file: export/import/validate round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from app.cli import cli
from app.rules.starter import starter_policy
from app.services.policy.io import dump_document, export_document

runner = CliRunner()


@pytest.fixture
def database(tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    monkeypatch.setenv("VERIFYGUARD_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.delenv("VERIFYGUARD_REDIS_URL", raising=False)
    return path


@pytest.fixture
def starter_file(tmp_path: Path) -> Path:
    path = tmp_path / "starter.yaml"
    path.write_text(dump_document(export_document(starter_policy()), "yaml"))
    return path


def run(*args: str | Path) -> Result:
    return runner.invoke(cli, [str(arg) for arg in args])


def test_import_export_import_round_trip(
    database: Path, starter_file: Path, tmp_path: Path
) -> None:
    first = run("rules", "import", starter_file)
    assert first.exit_code == 0, first.output
    assert "created  allowlist, blocklist" in first.output
    assert "changed: policy version 1" in first.output
    exported = tmp_path / "exported.yaml"
    assert run("rules", "export", "-o", exported).exit_code == 0
    assert yaml.safe_load(exported.read_text()) == yaml.safe_load(starter_file.read_text())
    again = run("rules", "import", exported)
    assert again.exit_code == 0
    assert "no changes: the policy already matches (version 1)" in again.output
    valid = run("rules", "validate", exported)
    assert valid.exit_code == 0
    assert "14 rules (13 enforce, 1 shadow, 0 off), 2 lists, default allow" in valid.output


def test_json_edit_updates_one_rule(database: Path, starter_file: Path, tmp_path: Path) -> None:
    run("rules", "import", starter_file)
    exported = run("rules", "export", "--format", "json")
    document = json.loads(exported.output)
    ceiling = next(r for r in document["rules"] if r["name"] == "price-ceiling")
    ceiling["when"]["value"] = 0.25
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(document))
    dry = run("rules", "import", edited, "--dry-run")
    assert "updated  price-ceiling" in dry.output and "would change" in dry.output
    result = run("rules", "import", edited)
    assert "updated  price-ceiling" in result.output and "policy version 2" in result.output
    listed = run("rules", "list").output.splitlines()
    row = next(line for line in listed if line.endswith("price-ceiling"))
    assert row.split()[4] == "2", "revision 2"


def test_validate_names_the_invalid_field_and_changes_nothing(
    database: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n- name: r\n  action: deny\n  reason: x_y\n"
        "  when: {field: country, op: gt, value: SE}\n"
    )
    result = run("rules", "validate", bad)
    assert result.exit_code == 1
    assert "rules.0.when.value" in result.output and "numeric field" in result.output
    assert run("rules", "import", bad).exit_code == 1
    assert run("rules", "list").output.count("\n") == 1, "only the header: nothing imported"


def test_malformed_file_is_a_readable_error(database: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{rules: ")
    result = run("rules", "validate", broken)
    assert result.exit_code == 1 and "not valid JSON" in result.output


def test_evaluate_explains_and_counts_nothing(database: Path, starter_file: Path) -> None:
    run("rules", "import", starter_file)
    premium = run("rules", "evaluate", "--number", "+449090000123", "--method", "callout")
    assert premium.exit_code == 0, premium.output
    assert "DENY  number_type_blocked  rule blocked-number-types (revision 1)" in premium.output
    outputs = [run("rules", "evaluate", "--number", "+46701234567").output for _ in range(2)]
    assert "ALLOW  default" in outputs[0]
    assert "attempts:number:3600=1" in outputs[0] and outputs[0] == outputs[1]


def test_lists_commands(database: Path, starter_file: Path, tmp_path: Path) -> None:
    run("rules", "import", starter_file)
    assert run("lists", "create", "pumped", "--kind", "prefix").exit_code == 0
    added = run("lists", "add", "pumped", "+4670", "+44 79", "--note", "walk", "--expires-in", "1d")
    assert "pumped: 2 added, 0 updated" in added.output
    csv = tmp_path / "entries.csv"
    csv.write_text("value,note,expires_at\n+3161,from csv,\n+4670,renewed,\n")
    assert "1 added, 1 updated" in run("lists", "import-csv", "pumped", csv).output
    shown = run("lists", "show", "pumped").output
    assert "+4479" in shown and "renewed" in shown and "from csv" in shown
    assert "1 removed" in run("lists", "remove", "pumped", "+3161").output
    assert run("lists", "delete", "blocklist").exit_code == 1, "used by a rule"
    assert "pumped deleted" in run("lists", "delete", "pumped").output
    listed = run("lists", "list").output
    assert "pumped" not in listed and "blocklist" in listed
