"""Loads bench/loop_watch.py into a bench server when VERIFYGUARD_LOOP_WATCH is set, and
bench/loop_watch_gc.py into a uvicorn process when VERIFYGUARD_GC_CYCLES is set (by path:
the server's own `app` and `bench` stay those of its checkout)."""

import importlib.util
import os
import sys
from typing import Any


def _load(name: str) -> Any:
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if os.environ.get("VERIFYGUARD_LOOP_WATCH"):
    _load("loop_watch").install(f"{os.environ['VERIFYGUARD_LOOP_WATCH']}.{os.getpid()}")

if os.environ.get("VERIFYGUARD_GC_CYCLES") and "uvicorn" in " ".join(sys.orig_argv):
    _load("loop_watch_gc").install(f"{os.environ['VERIFYGUARD_GC_CYCLES']}.{os.getpid()}")
