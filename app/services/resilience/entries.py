"""What a spool entry holds: the delivery as received, and for a request event its decision.

A `decision` entry is a request event answered without its decision stored (during an
outage, or a fallback); a `callback` entry is any other callback, replayed through intake.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from pydantic_core import to_json

from app.rules.decision import Decision
from app.rules.facts import Facts, facts_from_json, facts_to_json
from app.services.intake.deliveries import Delivery

DECISION = "decision"
CALLBACK = "callback"


def delivery_to_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "body": base64.b64encode(delivery.body).decode("ascii"),
        "content_type": delivery.content_type,
        "app_key": delivery.app_key,
        "received_at": delivery.received_at.isoformat(),
        "signature": delivery.signature,
    }


def shed_entry(delivery: Delivery, answer: bytes, elapsed_ms: float, action: str) -> str:
    """A shed request's entry as JSON text: the document `SpooledDecision(delivery, None,
    Decision.fallback(action), <answer decoded>, elapsed_ms, False).to_json()` is (`from_json`
    reads back the same entry; `answer` is the answer's JSON), built for a third of the
    instructions: the parts that repeat (the headers' values, the answer) encoded once, the
    receipt time by pydantic-core (ISO 8601 too, `Z` for `+00:00`), the body's base64
    as is (it needs no escape). `delivery_to_json`, then `json.dumps` in the spool: 87k."""
    head = _shed_head(delivery.content_type, delivery.app_key, delivery.signature)
    body = base64.b64encode(delivery.body).decode("ascii")
    received_at = to_json(delivery.received_at).decode()
    tail = _shed_tail(answer, action)
    return f'{head}{body}","received_at":{received_at}}},"elapsed_ms":{elapsed_ms!r}{tail}'


@lru_cache(maxsize=64)
def _shed_head(content_type: str | None, app_key: str | None, signature: str) -> str:
    parts = (to_json(value).decode() for value in (content_type, app_key, signature))
    return '{{"delivery":{{"content_type":{},"app_key":{},"signature":{},"body":"'.format(*parts)


@lru_cache(maxsize=8)
def _shed_tail(answer: bytes, action: str) -> str:
    return f',"answer":{answer.decode()},"degraded":false,"fallback":{to_json(action).decode()}}}'


def entry_key(kind: str, payload: dict[str, Any]) -> str | None:
    """The verification a spool entry belongs to: the `id` of the event it holds."""
    del kind  # both kinds hold their delivery
    try:
        document = json.loads(base64.b64decode(payload["delivery"]["body"]))
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    ident = document.get("id") if isinstance(document, dict) else None
    return ident if isinstance(ident, str) else None


def delivery_from_json(document: dict[str, Any]) -> Delivery:
    return Delivery(
        body=base64.b64decode(document["body"]),
        content_type=document["content_type"],
        app_key=document["app_key"],
        received_at=datetime.fromisoformat(document["received_at"]),
        signature=document["signature"],
    )


@dataclass(frozen=True, slots=True)
class SpooledDecision:
    """A request event and what Sinch was told.

    `degraded`: decided without the database (stored marked so, and counted on replay, as
    the database never saw it); otherwise a fallback the database may have counted already.
    `facts` None: a fallback given without deriving them (admission shed it: its answer must
    cost as little as possible, as past capacity most answers are those); the entry then
    holds only the fallback's action, and replay derives the facts from the event as
    received (the same the decision would have had: nothing counted, its receipt time).
    """

    delivery: Delivery
    facts: Facts | None
    decision: Decision
    answer: dict[str, Any]
    elapsed_ms: float
    degraded: bool

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "delivery": delivery_to_json(self.delivery),
            "answer": self.answer,
            "elapsed_ms": self.elapsed_ms,
            "degraded": self.degraded,
        }
        if self.facts is None:  # a plain Decision.fallback: its action says it all
            document["fallback"] = self.decision.action
        else:
            document["facts"] = facts_to_json(self.facts)
            document["decision"] = self.decision.model_dump(mode="json")
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> SpooledDecision:
        return cls(
            delivery=delivery_from_json(document["delivery"]),
            facts=facts_from_json(document["facts"]) if "facts" in document else None,
            decision=(
                Decision.fallback(document["fallback"])
                if "fallback" in document
                else Decision.model_validate(document["decision"])
            ),
            answer=document["answer"],
            elapsed_ms=float(document["elapsed_ms"]),
            degraded=bool(document["degraded"]),
        )
