"""Validation errors name the field a user wrote, without pydantic's union tags."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.rules.conditions import field_path
from app.rules.model import Rule


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"velocity": {"key": "number", "window": "soon", "max": 5}}, "when.velocity.window"),
        ({"field": "country", "op": "lt", "value": "SE"}, "when.value"),
        ({"not": {"field": "country", "op": "lt", "value": "SE"}}, "when.not.value"),
        (
            {"all": [{"in_list": "x"}, {"field": "nope", "op": "eq", "value": 1}]},
            "when.all.1.field",
        ),
    ],
)
def test_error_location_is_the_written_path(when: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Rule.model_validate({"name": "r", "action": "deny", "reason": "some_reason", "when": when})
    paths = {".".join(str(p) for p in field_path(tuple(e["loc"]))) for e in caught.value.errors()}
    assert expected in paths, paths
