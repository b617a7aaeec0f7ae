"""OpenAPI links: which operations take what another one answered (for clients and for the
stateful fuzzing in CI), e.g. `responses=created_links("/admin/rules/{rule_id}", rule_id="id")`."""

from __future__ import annotations

from typing import Any

_METHODS = ("get", "put", "patch", "delete", "post")


def _operation_ref(path: str, method: str) -> str:
    escaped = path.replace("~", "~0").replace("/", "~1")
    return f"#/paths/{escaped}/{method}"


def links(
    status: int, targets: dict[str, tuple[str, str]], **fields: str
) -> dict[int | str, dict[str, Any]]:
    """`status`'s answer links to each target (name → (method, path)); each path parameter
    is read from the answer's body field `fields[parameter]`."""
    documented = {
        name: {
            "operationRef": _operation_ref(path, method),
            "parameters": {
                param: f"$response.body#/{field}"
                for param, field in fields.items()
                if "{" + param + "}" in path
            },
        }
        for name, (method, path) in targets.items()
    }
    return {status: {"links": documented}}
