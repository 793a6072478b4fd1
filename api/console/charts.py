"""The overview's charts as SVG geometry, computed here and drawn by the template: no chart
library, no script, so they render under the console's CSP and in a screenshot alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Bottom to top in each bar; each has a colour class in console.css.
STATUS_ORDER = ("sent", "sending", "queued", "scheduled", "blocked", "escalated")
WIDTH, HEIGHT, LEFT, BOTTOM = 720, 200, 36, 24


@dataclass(frozen=True)
class Segment:
    status: str
    y: float
    height: float
    count: int


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    label: str | None  # the hour, under every sixth bar
    title: str  # shown on hover: the hour and its counts
    segments: list[Segment]


@dataclass(frozen=True)
class HourlyChart:
    bars: list[Bar]
    ticks: list[tuple[float, int]]  # (y, value) of the horizontal grid lines
    empty: bool
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM


def hourly_chart(hours: list[dict[str, Any]]) -> HourlyChart:
    """Stacked bars, one per hour, a segment per status, scaled to the busiest hour."""
    top = max((sum(hour["counts"].values()) for hour in hours), default=0)
    scale_max = _nice_ceiling(top)
    plot_height = HEIGHT - BOTTOM - 8
    step = (WIDTH - LEFT) / max(len(hours), 1)
    bars = []
    for i, hour in enumerate(hours):
        y = float(HEIGHT - BOTTOM)
        segments = []
        for status in STATUS_ORDER:
            count = hour["counts"].get(status, 0)
            if count:
                height = plot_height * count / scale_max
                y -= height
                segments.append(Segment(status, round(y, 1), round(height, 1), count))
        start = datetime.fromisoformat(hour["start"])
        counts = ", ".join(f"{s.count} {s.status}" for s in segments) or "no sends"
        bars.append(
            Bar(
                x=round(LEFT + i * step + 2, 1),
                width=round(step - 4, 1),
                label=start.strftime("%H:00") if i % 6 == 0 else None,
                title=f"{start:%Y-%m-%d %H:00} UTC: {counts}",
                segments=segments,
            )
        )
    ticks = [
        (round(HEIGHT - BOTTOM - plot_height * v / scale_max, 1), v)
        for v in (0, scale_max // 2, scale_max)
    ]
    return HourlyChart(bars=bars, ticks=ticks, empty=top == 0)


@dataclass(frozen=True)
class Gauge:
    used: int
    limit: int
    fraction: float  # of the limit used, 0-1 (capped for drawing)
    level: str  # ok | warn | full: its colour class
    width: int = WIDTH


def usage_gauge(used: int, limit: int) -> Gauge:
    """This hour's use of the workspace's limit, as a bar."""
    fraction = min(used / limit, 1.0) if limit else 1.0
    level = "full" if fraction >= 1.0 else "warn" if fraction >= 0.8 else "ok"
    return Gauge(used=used, limit=limit, fraction=fraction, level=level)


def _nice_ceiling(value: int) -> int:
    """The smallest of 2, 4, 10, 20, 40, 100, ... at least `value` (and even, for a middle tick)."""
    ceiling = 2
    while ceiling < value:
        ceiling = ceiling * 5 // 2 if str(ceiling).startswith("4") else ceiling * 2
    return ceiling
