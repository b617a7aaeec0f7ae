"""What a notification says: the JSON body every webhook gets, and Slack's readable text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.store.alert_rows import Containment

TITLES = {
    "alert.firing": "Alert firing",
    "alert.resolved": "Alert resolved",
    "containment.created": "Containment created",
    "containment.proposed": "Containment proposed (needs approval)",
    "containment.approved": "Containment approved",
    "containment.activated": "Containment in force (the key is dead)",
    "containment.lifted": "Containment lifted",
    "containment.extended": "Containment extended",
    "containment.expired": "Containment expired",
}


def containment_json(row: Containment) -> dict[str, Any]:
    return {
        "id": row.id,
        "key": row.key,
        "value": row.value,
        "alert": row.alert,
        "status": row.status,
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "created_by": row.created_by,
    }


def payload(
    kind: str,
    *,
    alert: str | None,
    key: str,
    value: str,
    at: datetime,
    observed: float | None = None,
    threshold: float | None = None,
    window: str | None = None,
    containment: Containment | None = None,
) -> dict[str, Any]:
    return {
        "type": kind,
        "alert": alert,
        "key": key,
        "value": value,
        "observed": observed,
        "threshold": threshold,
        "window": window,
        "at": at.isoformat(),
        "containment": containment_json(containment) if containment is not None else None,
    }


def slack_text(body: dict[str, Any], console_url: str | None) -> str:
    """One readable message with the same facts, and a link to the console when configured."""
    lines = [f"*{TITLES.get(body['type'], body['type'])}*: {body['alert'] or 'admin'}"]
    lines.append(f"{body['key']} `{body['value']}`")
    if body.get("observed") is not None:
        lines.append(
            f"observed {body['observed']:g} against {body['threshold']} over {body['window']}"
        )
    contained = body.get("containment")
    if contained:
        until = contained["expires_at"] or "approval"
        lines.append(f"containment #{contained['id']} {contained['status']} until {until}")
    lines.append(f"at {body['at']}")
    if console_url:
        lines.append(f"<{console_url.rstrip('/')}/containments|Open the console>")
    return "\n".join(lines)
