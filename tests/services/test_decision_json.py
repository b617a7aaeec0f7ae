"""The decision document PostgreSQL's batches store, encoded in one pass: the same text as
the document built as a dict and then encoded (what every other store writes)."""

from __future__ import annotations

from pydantic_core import to_json

from app.rules.engine import evaluate
from app.services.intake.records import decision_document, decision_json
from tests.rules.test_trace_golden import cases


def test_encoded_document_is_the_dict_document_encoded() -> None:
    seen = 0
    for _, compiled, facts, _ in cases():
        decision = evaluate(compiled, facts)
        expected = to_json(decision_document(decision, facts))
        assert decision_json(decision, facts) == expected
        seen += 1
    assert seen > 50
