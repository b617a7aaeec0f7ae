"""The local development Sinch application: created once, kept in a git-ignored file."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from pathlib import Path


def load_or_create_dev_app(path: Path) -> tuple[str, str]:
    """Return (key, base64 secret), creating them on first use."""
    if path.exists():
        data = json.loads(path.read_text())
        return str(data["key"]), str(data["secret"])
    key = str(uuid.uuid4())
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    path.write_text(json.dumps({"key": key, "secret": secret}, indent=2) + "\n")
    path.chmod(0o600)
    return key, secret
