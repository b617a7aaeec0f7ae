"""The simulator's webhook receiver over real HTTP: a delivery signed with the channel's
secret is recorded, anything else is answered 401 and only counted."""

from __future__ import annotations

import json
import socket

import httpx

from app.services.alerts.signing import webhook_headers
from app.simulator.webhooks import Listening, Receiver

SECRET = "whsec_dmVyaWZ5Z3VhcmQtc2ltdWxhdG9yLWRlbW8h"
OTHER = "whsec_c29tZWJvZHkgZWxzZSdzIHNlY3JldA=="
BODY = json.dumps(
    {"type": "alert.firing", "alert": "range-denied", "key": "range", "value": "+37190018"}
).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_signed_delivery_is_recorded_and_a_forged_one_rejected() -> None:
    receiver = Receiver(secret=SECRET, clock=lambda: 12.5)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/verifyguard"
    async with Listening(receiver, port=port), httpx.AsyncClient() as http:
        good = await http.post(url, content=BODY, headers=webhook_headers(SECRET, "msg_1", 1, BODY))
        forged = await http.post(
            url, content=BODY, headers=webhook_headers(OTHER, "msg_2", 1, BODY)
        )
        tampered = await http.post(
            url, content=BODY + b" ", headers=webhook_headers(SECRET, "msg_3", 1, BODY)
        )
        unsigned = await http.post(url, content=BODY, headers={"content-type": "application/json"})
    assert good.status_code == 204
    assert [forged.status_code, tampered.status_code, unsigned.status_code] == [401, 401, 401]
    assert receiver.rejected == 3
    [notice] = receiver.notices
    assert (notice.type, notice.alert, notice.key, notice.value) == (
        "alert.firing",
        "range-denied",
        "range",
        "+37190018",
    )
    assert notice.arrived_s == 12.5
