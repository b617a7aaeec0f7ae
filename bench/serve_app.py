"""A bench's VerifyGuard server: one uvicorn worker serving FACTORY (module:function) from
the checkout in --app-dir the way that checkout's `verifyguard serve` serves: on the
listening sockets of its app/cli/listen.py, or, for a checkout from before it (2026-12-06),
as uvicorn serves on its own (one socket, uvloop). Run as a file, not a module, so that
`app` is imported from --app-dir only.

    python bench/serve_app.py FACTORY --app-dir DIR --port PORT [--listeners N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("factory")
    parser.add_argument("--app-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--listeners", type=int, help="sockets on the port (default: serve's)")
    args = parser.parse_args()
    sys.path[0] = str(args.app_dir)  # this file's directory out: bench/wave.py is not `wave`
    try:
        from app.cli import listen
        from app.cli.serve import uvicorn_settings
    except ImportError:
        uvicorn.run(
            args.factory, factory=True, host="127.0.0.1", port=args.port, log_level="warning",
            access_log=False, http="httptools", loop="uvloop",
        )  # fmt: skip
        return
    settings = uvicorn_settings("127.0.0.1", args.port, workers=1, worker_timeout=60)
    config = uvicorn.Config(**(settings | {"app": args.factory, "http": "httptools"}))
    count = args.listeners or listen.LISTENERS
    listen.run(config, listen.listening_sockets("127.0.0.1", args.port, count))


if __name__ == "__main__":
    main()
