"""The audit API's reads run beside the writer (services/audit/queries.py `read_apart`):
on SQLite the writer is the one connection request events are decided on, and a search
that few rows match reads the whole table (under an attack a million rows, a second or
more). Each read is parked here while request events are decided; each is logged once,
after it answered, and a refused one once, as refused."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store import audit as audit_store
from tests.audit.rows import audit_log, insert_rows, row
from tests.support import SinchSender
from tests.support_beside import asked_beside_requests, park

ID, REFERENCE, NUMBER = "v-beside-1", "signup-beside", "+46701230001"
READS = {
    "search": ("/audit/verifications", {"number": NUMBER}, "search"),
    "by id": (f"/audit/verifications/id/{ID}", None, "by_id"),
    "by reference": (f"/audit/verifications/reference/{REFERENCE}", None, "latest"),
    "by number": (f"/audit/verifications/sms/number/{NUMBER}", None, "latest"),
    "timeline": (f"/audit/verifications/{ID}/timeline", None, "by_id"),
    "export": ("/audit/export", {"format": "ndjson"}, "search"),
}


@pytest.mark.parametrize("read", READS)
async def test_an_audit_read_holds_no_request_event_back(
    read: str,
    client: AsyncClient,
    admin: dict[str, str],
    engine: AsyncEngine,
    sinch: SinchSender,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await insert_rows(engine, [row(id=ID, reference=REFERENCE, number=NUMBER)])
    path, params, parked_function = READS[read]
    parked = park(monkeypatch, audit_store, parked_function)

    response = await asked_beside_requests(
        client, admin, sinch, parked, path, params, first=5_234_500 + 10 * len(read)
    )

    assert response.status_code == 200, response.text
    assert ID in response.text
    assert [(e["path"], e["status"]) for e in await audit_log(engine)] == [(path, 200)]


async def test_a_refused_read_is_logged_once_as_refused(
    client: AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    path = "/audit/verifications/id/v-nowhere"
    response = await client.get(path, headers=admin)
    assert response.status_code == 404
    assert response.json()["code"] == "verification_not_found"
    assert [(e["path"], e["status"]) for e in await audit_log(engine)] == [(path, 404)]
