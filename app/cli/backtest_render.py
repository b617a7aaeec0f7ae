"""The backtest report as a person reads it in a terminal (the same numbers as --json)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _money(amounts: dict[str, float]) -> str:
    return ", ".join(f"{amount:.2f} {currency}" for currency, amount in amounts.items()) or "0"


def print_report(console: Console, backtest: dict[str, Any]) -> None:
    result = backtest["result"]
    console.print(
        f"[bold]Backtest {backtest['id']}[/]: {backtest['since']} .. {backtest['until']}"
        f" ({backtest['status']})"
    )
    live, candidate, flips = result["live"], result["candidate"], result["flips"]
    summary = Table(show_header=True, header_style="bold")
    for column in ("", "allowed", "denied"):
        summary.add_column(column, justify="right" if column else "left")
    summary.add_row("live", str(live["allowed"]), str(live["denied"]))
    summary.add_row("candidate", str(candidate["allowed"]), str(candidate["denied"]))
    console.print(summary)
    console.print(
        f"attempts {result['attempts']}  allow→deny {flips['allow_to_deny']}  "
        f"deny→allow {flips['deny_to_allow']}  caught {result['caught']}  "
        f"false positives {result['false_positives']}"
    )
    console.print(
        f"money saved {_money(result['spend_saved'])}  lost {_money(result['spend_lost'])}"
    )
    console.print(_rules(result["by_rule"]))
    console.print(_countries(result["by_country"][:10]))
    for skipped in result["skipped"]:
        console.print(f"skipped {skipped['count']}: {skipped['reason']}")


def _rules(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="By rule", header_style="bold")
    for column in ("rule", "mode", "action", "matched", "would deny", "caught", "false pos."):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["rule"],
            row["mode"],
            row["action"],
            str(row["matched"]),
            str(row["would_deny"]),
            str(row["caught"]),
            str(row["false_positives"]),
        )
    return table


def _countries(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="By country (top 10)", header_style="bold")
    for column in ("country", "attempts", "live denied", "candidate denied", "caught", "f.p."):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["country"],
            str(row["attempts"]),
            str(row["live"]["denied"]),
            str(row["candidate"]["denied"]),
            str(row["caught"]),
            str(row["false_positives"]),
        )
    return table
