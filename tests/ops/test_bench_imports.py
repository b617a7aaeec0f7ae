"""The benchmark programs (`make bench`, `make soak`, bench/…) are not run by the suite (they
take minutes and need a quiet machine), but each must at least import: a helper renamed in
one of them must not leave another broken until someone runs it."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench

MODULES = sorted(m.name for m in pkgutil.walk_packages(bench.__path__, prefix="bench."))


def test_every_benchmark_module_is_found() -> None:
    assert {"bench.run", "bench.soak", "bench.loadgen"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_benchmark_module_imports(module: str) -> None:
    assert importlib.import_module(module).__name__ == module
