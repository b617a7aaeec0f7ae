"""How `verifyguard rules` prints rules, import results and decisions for people."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import typer

from app.rules.model import Policy
from app.services.policy.io import ImportReport
from app.store.policy_rows import StoredRule

_MARK = {True: "match", False: "no match"}


def summary(policy: Policy) -> str:
    modes = [rule.mode for rule in policy.rules]
    return (
        f"{len(modes)} rules ({modes.count('enforce')} enforce, {modes.count('shadow')} shadow, "
        f"{modes.count('off')} off), {len(policy.lists)} lists, default {policy.default_action}"
    )


def print_rules(rules: Sequence[StoredRule]) -> None:
    typer.echo(f"{'id':>4}  {'prio':>4}  {'mode':7}  {'action':6}  {'rev':>3}  {'reason':22}  name")
    for r in rules:
        typer.echo(
            f"{r.id:>4}  {r.priority:>4}  {r.mode:7}  {r.action:6}  "
            f"{r.revision:>3}  {r.reason:22}  {r.name}"
        )


def print_import(report: ImportReport) -> None:
    diff = report.diff
    verb = "would change" if report.dry_run else "changed"
    if not diff.changed:
        typer.echo(f"no changes: the policy already matches (version {report.version})")
        return
    for what, names in (
        ("created", diff.created),
        ("updated", diff.updated),
        ("deleted", diff.deleted),
    ):
        if names:
            typer.echo(f"{what:8} {', '.join(names)}")
    if diff.lists_changed:
        typer.echo("lists    replaced")
    if diff.default_action_changed:
        typer.echo("default  action changed")
    tail = "" if report.dry_run else f": policy version {report.version}"
    typer.echo(f"{verb}{tail}")


def print_decision(result: Mapping[str, Any]) -> None:
    facts = result["facts"]
    rule = f"rule {result['rule']} (revision {result['rule_revision']})"
    by = rule if result["rule"] else f"decided by {result['mode']}"
    typer.secho(
        f"{result['action'].upper()}  {result['reason']}  {by}",
        fg=typer.colors.GREEN if result["action"] == "allow" else typer.colors.RED,
        bold=True,
    )
    typer.echo(f"answer      {json.dumps(result['answer'])}")
    typer.echo(
        f"facts       {facts['number']} {facts['country']} {facts['number_type']} "
        f"valid={facts['valid']} method={facts['method']} price={facts['price_amount']}"
    )
    counts = ", ".join(f"{k}={v:g}" for k, v in sorted(result["aggregates"].items()))
    typer.echo(f"aggregates  {counts or '(none needed)'}")
    for match in result["shadow"]:
        typer.echo(f"shadow      {match['rule']} would {match['action']} ({match['reason']})")
    typer.echo("trace")
    for entry in result["trace"]:
        state = f"skipped: {entry['skipped']}" if entry["skipped"] else _MARK[entry["matched"]]
        typer.echo(f"  {entry['rule']:28} {entry['mode']:7} {state}")
        for condition in entry["conditions"]:
            typer.echo(f"  {'':4}{'  ' * condition['depth']}{condition['text']}")
