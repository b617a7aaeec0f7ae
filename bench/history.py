"""A verified history for the bench's fresh database, sent through the callback itself.

The bench's load is request events only: nothing ever verifies. On an empty database the
starter policy then judges every country dead a minute in (no success today, unverified
attempts piling up) and denies almost everything, so a phase would measure the deny path
of a country under attack, not real users' sign-ups. Before each measured phase, every
range the load draws from gets a few attempts whose SUCCESSFUL result arrives, as real
sign-ups leave behind; the measured attempts themselves stay unverified (the load sends no
results), so rules about unverified attempts still see them.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime

import httpx

from app.simulator.catalog import LEGIT
from app.sinch import samples
from app.sinch.signature import callback_headers


def seed_verified(
    port: int, *, key: str, secret: str, path: str, per_range: int = 5, seed: int = 7
) -> dict[str, int]:
    """`per_range` verified attempts to each legit range; how many were allowed and
    verified (a bench on a policy that refused them would say so)."""
    rng = random.Random(seed)  # noqa: S311 - sample numbers, not secrets
    counts = {"sent": 0, "allowed": 0}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
        for span in LEGIT:
            for _ in range(per_range):
                number = span.number(rng)
                verification_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                request = samples.request_event(
                    number=number, verification_id=verification_id, price=span.price
                )
                answer = _post(client, request, key=key, secret=secret, path=path)
                counts["sent"] += 1
                if answer.get("action") != "allow":
                    continue
                counts["allowed"] += 1
                result = samples.result_event(verification_id=verification_id, number=number)
                _post(client, result, key=key, secret=secret, path=path)
    return counts


def _post(
    client: httpx.Client, event: dict[str, object], *, key: str, secret: str, path: str
) -> dict[str, object]:
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = callback_headers(
        key=key, secret_b64=secret, body=body, path=path, now=datetime.now(UTC)
    )
    response = client.post(path, content=body, headers=headers)
    response.raise_for_status()
    answer: dict[str, object] = response.json() if response.content else {}
    return answer
