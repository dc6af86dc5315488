"""Charts drawn on the server as inline SVG: no chart library, no script, printable.

Colours come from CSS classes (`chart-bar`, `chart-axis`…) in `dashboard.css`. Every
chart has a `<title>` and an `aria-label`, and every bar its value as text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup


def _fmt(value: float) -> str:
    return f"{value:g}"


def bar_chart(
    bars: Sequence[tuple[str, int]], *, title: str, empty: str, width: int = 640, height: int = 220
) -> Markup:
    """Vertical bars with their value on top and a label below (every n-th when crowded)."""
    if not bars or not any(v for _, v in bars):
        return Markup(
            '<svg class="chart" viewBox="0 0 {w} 60" role="img" aria-label="{t}">'
            "<title>{t}</title>"
            '<text class="chart-empty" x="{x}" y="35" text-anchor="middle">{e}</text></svg>'
        ).format(w=width, t=title, x=width // 2, e=empty)
    top, bottom, left, right = 22, 34, 8, 8
    plot_h = height - top - bottom
    slot = (width - left - right) / len(bars)
    bar_w = max(2.0, min(slot * 0.7, 72.0))
    peak = max(v for _, v in bars) or 1
    every = max(1, math.ceil(len(bars) / 12))
    parts = [
        Markup('<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}">').format(
            w=width, h=height, t=title
        ),
        Markup("<title>{}</title>").format(title),
        Markup('<line class="chart-axis" x1="{l}" y1="{y}" x2="{r}" y2="{y}"/>').format(
            l=left, r=width - right, y=top + plot_h
        ),
    ]
    for index, (label, value) in enumerate(bars):
        x = left + index * slot + (slot - bar_w) / 2
        bar_h = plot_h * value / peak
        y = top + plot_h - bar_h
        centre = x + bar_w / 2
        parts.append(
            Markup(
                '<g class="chart-item"><title>{label}: {value}</title>'
                '<rect class="chart-bar" x="{x}" y="{y}" width="{w}" height="{h}" rx="2"/>'
            ).format(
                label=label,
                value=value,
                x=_fmt(round(x, 2)),
                y=_fmt(round(y, 2)),
                w=_fmt(round(bar_w, 2)),
                h=_fmt(round(bar_h, 2)),
            )
        )
        if value:
            parts.append(
                Markup(
                    '<text class="chart-value" x="{x}" y="{y}" text-anchor="middle">{v}</text>'
                ).format(x=_fmt(round(centre, 2)), y=_fmt(round(y - 5, 2)), v=value)
            )
        if index % every == 0:
            parts.append(
                Markup(
                    '<text class="chart-label" x="{x}" y="{y}" text-anchor="middle">{label}</text>'
                ).format(x=_fmt(round(centre, 2)), y=height - bottom + 16, label=label)
            )
        parts.append(Markup("</g>"))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def funnel(
    steps: Sequence[tuple[str, int]], *, title: str, empty: str, width: int = 1200
) -> Markup:
    """Horizontal bars, each step's count and its share of the first step."""
    first = steps[0][1] if steps else 0
    if not first:
        return bar_chart([], title=title, empty=empty, width=width)
    row_h, label_w, gap = 26, 130, 8
    height = len(steps) * (row_h + gap)
    plot_w = width - label_w - 110
    parts = [
        Markup('<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}">').format(
            w=width, h=height, t=title
        ),
        Markup("<title>{}</title>").format(title),
    ]
    for index, (label, value) in enumerate(steps):
        y = index * (row_h + gap)
        share = 100.0 * value / first
        bar_w = max(2.0, plot_w * value / first)
        parts.append(
            Markup(
                '<g class="chart-item"><title>{label}: {value} ({share}%)</title>'
                '<text class="chart-label funnel-text" x="0" y="{ty}">{label}</text>'
                '<rect class="chart-bar funnel-{index}" x="{x}" y="{y}" width="{w}" '
                'height="{h}" rx="3"/>'
                '<text class="chart-value funnel-text" x="{vx}" y="{ty}">'
                "{value} · {share}%</text></g>"
            ).format(
                label=label,
                value=value,
                share=_fmt(round(share, 1)),
                index=index,
                x=label_w,
                y=y,
                w=_fmt(round(bar_w, 2)),
                h=row_h,
                ty=y + row_h / 2 + 5,
                vx=_fmt(round(label_w + bar_w + 8, 2)),
            )
        )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)
