"""Readable tables for `verifyguard audit` (rich), one function per kind of answer."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from app.services.audit.documents import (
    ShadowRuleDoc,
    StatsCounts,
    StatsDoc,
    TimelineEvent,
    VerificationDoc,
)


def _console() -> Console:
    """Fit the terminal; when piped (or under test), wide enough not to cut cells."""
    return Console(width=None if sys.stdout.isatty() else 220)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items()) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _when(value: Any) -> str:
    return _text(value)[:19].replace("T", " ")


def verification(v: VerificationDoc) -> None:
    decision, price = v["decision"], v["price"]
    rule = decision["rule"] and f"{decision['rule']} r{decision['ruleRevision']}"
    table = Table(show_header=False, box=None)
    rows = [
        ("id", v["id"]),
        ("requested", _when(v["requestedAt"])),
        ("number", f"{_text(v['identity']['endpoint'])} ({_text(v['countryId'])})"),
        ("method", v["method"]),
        ("reference", v["reference"]),
        ("application", v["application"]),
        ("price", price["verificationPrice"] if price else None),
        ("decision", f"{decision['action']} · {decision['reason']} · {decision['decidedBy']}"),
        ("rule", rule),
        ("shadow deny", decision["shadowDeny"]),
        ("status", f"{v['status']} {v['reason'] or ''}".strip()),
        ("sms", v["smsResult"]),
    ]
    for name, value in rows:
        table.add_row(f"[bold]{name}[/bold]", _text(value))
    _console().print(table)


def timeline(events: list[TimelineEvent]) -> None:
    table = Table("at", "kind", "what", title="timeline")
    for event in events:
        table.add_row(_when(event["at"]), event["kind"], _event_text(event))
    _console().print(table)


def _event_text(event: TimelineEvent) -> str:
    if event["kind"] == "decision":
        head = f"{event['action']} ({event['reason']}) by {event['decidedBy']}"
        if event["rule"]:
            head += f": {event['rule']} revision {event['ruleRevision']}"
        lines = [head] + [
            f"  {'✓' if c['held'] else '✗'} {entry['rule']}: {c['text']}"
            for entry in event["trace"]
            for c in entry.get("conditions", [])
        ]
        lines += [f"  shadow {m['rule']} would {m['action']}" for m in event["shadowMatches"]]
        return "\n".join(lines)
    body = event["body"]
    summary = json.dumps(body, separators=(",", ":")) if body is not None else event["rawText"]
    status = "" if event["httpStatus"] == 200 else f" [HTTP {event['httpStatus']}]"
    return f"{summary}{status}"


def page(items: list[VerificationDoc]) -> None:
    columns = ("requested", "id", "method", "number", "cc", "action", "reason", "rule", "status")
    table = Table(*columns)
    for v in items:
        d = v["decision"]
        table.add_row(
            _when(v["requestedAt"]),
            v["id"],
            _text(v["method"]),
            _text(v["identity"]["endpoint"]),
            _text(v["countryId"]),
            _text(d["action"]),
            _text(d["reason"]),
            _text(d["rule"]),
            v["status"],
        )
    _console().print(table)


_COUNTS = ("attempts", "allowed", "denied", "shadowWouldDeny", "completed", "successful")


def stats(result: StatsDoc) -> None:
    title = f"{_when(result['since'])} → {_when(result['until'])}"
    table = Table("bucket", "group", *_COUNTS, "conv", "spend allowed", "spend denied", title=title)
    for row in result["rows"]:
        table.add_row(*_stats_line(row["bucket"], row["group"], row, row["conversionRate"]))
    totals = result["totals"]
    table.add_row(*_stats_line(None, "TOTAL", totals, totals["conversionRate"]))
    _console().print(table)
    ranges = Table("range", "denied", title="top denied ranges")
    for found in result["topDeniedRanges"]:
        ranges.add_row(found["range"], str(found["denied"]))
    _console().print(ranges)
    shadow = Table("rule", "matches", "would deny", "of allowed", "successful", "would save")
    for rule in result["shadowRules"]:
        shadow.add_row(*_shadow_line(rule))
    _console().print(shadow)


def _stats_line(
    bucket: datetime | None, group: str | None, row: StatsCounts, conversion: float | None
) -> list[str]:
    counts = [row["attempts"], row["allowed"], row["denied"], row["shadowWouldDeny"]]
    counts += [row["completed"], row["successful"]]
    return [
        _when(bucket),
        _text(group),
        *(str(count) for count in counts),
        "-" if conversion is None else f"{conversion:.1%}",
        _text(row["spendAllowed"]),
        _text(row["spendDenied"]),
    ]


def _shadow_line(rule: ShadowRuleDoc) -> list[str]:
    counts = [rule["matches"], rule["wouldDeny"], rule["wouldDenyAllowed"]]
    counts.append(rule["wouldDenySuccessful"])
    return [rule["rule"], *(str(count) for count in counts), _text(rule["spendWouldSave"])]
