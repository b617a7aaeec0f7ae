"""The decisions-over-time chart as plain data for an inline SVG: stacked bars per bucket
(denied, allowed that a shadow rule would deny, other allowed) and a spend line. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WIDTH, HEIGHT, PAD = 960, 240, 36
SERIES = (
    ("denied", "Denied"),
    ("would_deny", "Allowed, a shadow rule would deny"),
    ("allowed", "Allowed"),
)


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket's counts (allowed excludes the would-deny ones) and spend allowed."""

    start: datetime
    denied: int
    would_deny: int
    allowed: int
    spend: float

    @property
    def total(self) -> int:
        return self.denied + self.would_deny + self.allowed


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    points: list[Point]
    bars: list[Bar]
    line: str  # SVG polyline points of the spend
    peak: int
    peak_spend: float
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD


def buckets(since: datetime, until: datetime, step: timedelta) -> list[datetime]:
    """Every bucket start in the window (aligned to the step, as the stats align them)."""
    epoch = datetime(1970, 1, 1, tzinfo=since.tzinfo)
    start = epoch + ((since - epoch) // step) * step
    out = []
    while start < until:
        out.append(start)
        start += step
    return out


def chart(points: list[Point]) -> Chart:
    peak = max((p.total for p in points), default=0) or 1
    peak_spend = max((p.spend for p in points), default=0.0) or 1.0
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    slot = inner_w / max(len(points), 1)
    bars: list[Bar] = []
    line: list[str] = []
    for i, point in enumerate(points):
        x, base = PAD + i * slot, HEIGHT - PAD
        for key, label in SERIES:
            count = getattr(point, key)
            h = inner_h * count / peak
            if count:
                title = f"{point.start:%Y-%m-%d %H:%M}: {count} {label.lower()}"
                bars.append(Bar(x + slot * 0.1, base - h, slot * 0.8, h, key, title))
            base -= h
        spend_y = HEIGHT - PAD - inner_h * point.spend / peak_spend
        line.append(f"{x + slot / 2:.1f},{spend_y:.1f}")
    return Chart(points, bars, " ".join(line), peak, peak_spend)
