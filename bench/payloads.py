"""Pre-signed callbacks: distinct verification ids and realistic numbers, so the guard
decides every one and no velocity rule dominates.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.simulator.catalog import LEGIT, pick
from app.sinch import samples
from app.sinch.signature import callback_headers


def legit_request_events(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """`count` request events to numbers of the simulator's legit catalogue, ids from `rng`."""
    events = []
    for _ in range(count):
        span = pick(rng, LEGIT)
        events.append(
            samples.request_event(
                number=span.number(rng),
                verification_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                price=span.price,
            )
        )
    return events


def signed_events(
    count: int, *, path: str, key: str, secret: str, seed: int
) -> list[tuple[dict[str, str], bytes]]:
    """`count` request events as (headers, body), signed now."""
    rng = random.Random(seed)  # noqa: S311 - load shape, not secrets
    now = datetime.now(UTC)
    events: list[tuple[dict[str, str], bytes]] = []
    for event in legit_request_events(rng, count):
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = callback_headers(key=key, secret_b64=secret, body=body, path=path, now=now)
        events.append((headers, body))
    return events


def signed_requests(
    count: int, *, host: str, path: str, key: str, secret: str, seed: int
) -> list[bytes]:
    """`count` complete POSTs (request line, headers, body), keep-alive, signed now."""
    requests: list[bytes] = []
    for headers, body in signed_events(count, path=path, key=key, secret=secret, seed=seed):
        head = [f"POST {path} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        requests.append(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return requests


def write_wrk_requests(
    target: Path, count: int, *, path: str, key: str, secret: str, seed: int
) -> None:
    """The file bench/wrk.lua replays: one "authorization, x-timestamp, content-type, body"
    line per request, tab-separated (compact JSON bodies hold no tab or newline)."""
    with target.open("w") as out:
        for headers, body in signed_events(count, path=path, key=key, secret=secret, seed=seed):
            fields = (headers["authorization"], headers["x-timestamp"], headers["content-type"])
            out.write("\t".join((*fields, body.decode())) + "\n")
