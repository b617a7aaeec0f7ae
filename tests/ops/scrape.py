"""Reading samples out of a /metrics page (Prometheus text format)."""

from __future__ import annotations

import re


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.startswith(name) and (
            series == name or _labels(series) == wanted or (not labels and series == name)
        ):
            return float(value)
    return 0.0


def _labels(series: str) -> str:
    found = re.findall(r'(\w+)="([^"]*)"', series)
    return ",".join(f'{k}="{v}"' for k, v in sorted(found))
