"""Loads bench/loop_watch.py into a bench server when VERIFYGUARD_LOOP_WATCH is set (by
path: the server's own `app` and `bench` stay those of its checkout)."""

import importlib.util
import os

if os.environ.get("VERIFYGUARD_LOOP_WATCH"):
    _path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "loop_watch.py")
    _spec = importlib.util.spec_from_file_location("_loop_watch", _path)
    assert _spec is not None
    assert _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.install(f"{os.environ['VERIFYGUARD_LOOP_WATCH']}.{os.getpid()}")
