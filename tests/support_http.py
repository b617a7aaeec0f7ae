"""For tests that stand up a bare HTTP/1.1 server on loopback (the load generators' and the
simulator's connection handling): one request read off a stream, and an answer that allows."""

from __future__ import annotations

import asyncio

ALLOW = b'{"action":"allow"}'
ALLOW_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(ALLOW), ALLOW)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request (its head, then as many body bytes as its content-length says): its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.partition(b":")[2])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return await reader.readexactly(length)
