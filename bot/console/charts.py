"""The overview's charts as SVG drawn on the server: no chart library, no script, nothing fetched.

Each function returns a complete `<svg>` element (markupsafe `Markup`) to put inline in a page. A
chart is drawn in a 360-unit wide viewBox and scaled to its box's width: on a 375 px phone one unit is
about one pixel, so the 11-unit texts read as 11 px. Colours, sizes and fonts are SVG presentation
attributes (the console's Content-Security-Policy forbids style attributes, not these). Every text
that comes from data (labels, series names, titles) is escaped. For screen readers the chart is an
image (`role="img"`) named by its `<title>` and described by a `<desc>` that lists every value; each
bar and point also has its own `<title>`, which desktop browsers show on hover.

Values are counts or seconds; None is "no value" (an hour still to come, a day without data): no bar
or point is drawn for it, which is not the same as a bar of 0.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

#: the viewBox's width; heights depend on the chart
WIDTH = 360
#: room for the title above the plot, the y axis' labels on its left, the x axis' labels below it
TOP, LEFT, RIGHT, AXIS_BELOW = 30, 38, 8, 22
PLOT_HEIGHT = 140
FONT = 11
#: an approximation of the width of one character of FONT (digits, Latin), to space the x labels
CHAR_WIDTH = 6.2
#: a Chinese character is about as wide as the font is tall
WIDE_CHAR_WIDTH = 11.0
LEGEND_ROW = 16
#: a ranked chart's labels: at most this wide, with this gap on their left and before their bar
LABEL_MAX = 150.0
LABEL_GAP = 4
#: Okabe–Ito colours, told apart by colour-blind readers; the first is WeChat's green
PALETTE = ("#07c160", "#0072b2", "#e69f00", "#cc79a7", "#56b4e9", "#009e73", "#7f7f7f")
#: failures (the `alarm` series, the ranked bars) in shades of Okabe–Ito's vermilion
ALARM = ("#d55e00", "#9e3d00", "#f08a4b")
FAIL_COLOUR = ALARM[0]
GRID = "#d8dee4"
MUTED = "#656d76"
INK = "#1f2328"

Values = Sequence[float | None]
Series = Sequence[tuple[str, Values]]


@dataclass(frozen=True)
class Scale:
    """The y axis: its top value and the values of its grid lines."""

    top: float
    ticks: list[float]

    def y(self, value: float) -> float:
        """The SVG y of a value (the plot's bottom is 0)."""
        return TOP + PLOT_HEIGHT * (1 - value / self.top)


def bars(
    chart_id: str, title: str, labels: Sequence[str], values: Values, *, unit: str = "", empty: str = ""
) -> Markup:
    """One bar per label (e.g. messages per hour)."""
    return stacked(chart_id, title, labels, [("", values)], unit=unit, empty=empty)


def stacked(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Series,
    *,
    unit: str = "",
    empty: str = "",
    alarm: Collection[str] = (),
) -> Markup:
    """Bars of several series stacked per label (e.g. pages by delivery path per day), with a legend
    when there is more than one series. A series named "" is not listed in the legend; the series
    named in `alarm` (failures) are drawn in shades of red, the others in PALETTE's order."""
    colours = _colours(series, alarm)
    totals = [_sum(values[i] for _, values in series) for i in range(len(labels))]
    scale = _scale([t for t in totals if t is not None])
    slot = _plot_width() / max(1, len(labels))
    width = max(1.0, slot * 0.72)
    parts: list[str] = []
    for i, label in enumerate(labels):
        base = 0.0
        for index, (name, values) in enumerate(series):
            value = values[i] if i < len(values) else None
            if not value:
                continue
            x = LEFT + slot * i + (slot - width) / 2
            tip = f"{label} {name}: {_number(value)}{unit}" if name else f"{label}: {_number(value)}{unit}"
            parts.append(
                _rect(
                    x,
                    scale.y(base + value),
                    width,
                    scale.y(base) - scale.y(base + value),
                    colours[index],
                    tip,
                )
            )
            base += value
    return _frame(chart_id, title, labels, series, scale, parts, unit=unit, empty=empty, colours=colours)


def lines(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Series,
    *,
    unit: str = "",
    empty: str = "",
    alarm: Collection[str] = (),
) -> Markup:
    """One line per series (e.g. messages and users per day, latency p50 and p95), a dot on each value;
    a None breaks the line. `alarm`: as for `stacked`."""
    colours = _colours(series, alarm)
    scale = _scale([v for _, values in series for v in values if v is not None])
    slot = _plot_width() / max(1, len(labels))
    parts: list[str] = []
    for index, (name, values) in enumerate(series):
        colour, run = colours[index], list[tuple[float, float]]()
        for i, value in enumerate(values[: len(labels)]):
            if value is None:
                parts.append(_polyline(run, colour))
                run = []
                continue
            x, y = LEFT + slot * (i + 0.5), scale.y(value)
            run.append((x, y))
            tip = (
                f"{labels[i]} {name}: {_number(value)}{unit}"
                if name
                else f"{labels[i]}: {_number(value)}{unit}"
            )
            parts.append(_dot(x, y, colour, tip))
        parts.append(_polyline(run, colour))
    return _frame(chart_id, title, labels, series, scale, parts, unit=unit, empty=empty, colours=colours)


def ranked(
    chart_id: str,
    title: str,
    items: Sequence[tuple[str, float]],
    *,
    unit: str = "",
    empty: str = "",
    failures: bool = True,
) -> Markup:
    """Horizontal bars, largest first, each with its label and value (e.g. job failures by reason);
    red for failures, else PALETTE's first colour."""
    colour = FAIL_COLOUR if failures else PALETTE[0]
    items = sorted(((str(label), value) for label, value in items if value), key=lambda item: -item[1])
    row = 20
    height = TOP + max(1, len(items)) * row + 8
    top = max((value for _, value in items), default=0)
    widest = max((_text_width(label) for label, _ in items), default=0)
    # room for the widest label between the left edge and the bars (a longer one is cut to it)
    label_width = min(LABEL_MAX, widest + 2 * LABEL_GAP)
    room = WIDTH - RIGHT - label_width - 48
    parts = []
    for i, (label, value) in enumerate(items):
        y = TOP + i * row
        length = max(1.0, room * value / top)
        label = _clip(label, label_width - 2 * LABEL_GAP)
        parts.append(_text(label_width - LABEL_GAP, y + 14, label, anchor="end"))
        parts.append(_rect(label_width, y + 3, length, row - 6, colour, f"{label}: {_number(value)}{unit}"))
        parts.append(_text(label_width + length + 4, y + 14, f"{_number(value)}{unit}", anchor="start"))
    if not items:
        parts.append(_text(WIDTH / 2, TOP + 14, empty, anchor="middle", fill=MUTED))
    desc = "; ".join(f"{label}: {_number(value)}{unit}" for label, value in items) or empty
    return _svg(chart_id, title, desc, height, parts)


# --- the frame: title, axes, grid, legend -------------------------------------------------------


def _frame(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Series,
    scale: Scale,
    marks: list[str],
    *,
    unit: str,
    empty: str,
    colours: list[str],
) -> Markup:
    named = [name for name, _ in series] if len(series) > 1 else []
    legend_parts, legend_height = _legend(named, colours, TOP + PLOT_HEIGHT + AXIS_BELOW + 4)
    height = TOP + PLOT_HEIGHT + AXIS_BELOW + legend_height + 6
    has_data = any(v for _, values in series for v in values)  # all 0 or None: nothing to draw
    parts = [*_grid(scale, unit), *_x_labels(labels), *(marks if has_data else []), *legend_parts]
    if not has_data:
        parts.append(
            _text(LEFT + _plot_width() / 2, TOP + PLOT_HEIGHT / 2, empty, anchor="middle", fill=MUTED)
        )
    return _svg(chart_id, title, _describe(labels, series, unit) if has_data else empty, height, parts)


def _svg(chart_id: str, title: str, desc: str, height: float, parts: list[str]) -> Markup:
    ident = escape(chart_id)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{ident}" '
        f'viewBox="0 0 {WIDTH} {_n(height)}" '
        f'width="100%" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'font-family="sans-serif" font-size="{FONT}" fill="{INK}">'
        f'<title id="{ident}-title">{escape(title)}</title><desc id="{ident}-desc">{escape(desc)}</desc>'
    )
    heading = _text(4, 16, title, anchor="start", weight="600", size=13)
    return Markup(head + heading + "".join(parts) + "</svg>")


def _grid(scale: Scale, unit: str) -> list[str]:
    parts = []
    for tick in scale.ticks:
        y = scale.y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_n(y)}" y2="{_n(y)}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        parts.append(_text(LEFT - 4, y + 4, f"{_number(tick)}{unit}", anchor="end", fill=MUTED, size=10))
    return parts


def _x_labels(labels: Sequence[str]) -> list[str]:
    """The x axis' labels, every `step`-th one so that they do not overlap, always the last one."""
    if not labels:
        return []
    slot = _plot_width() / len(labels)
    widest = max(_text_width(label) for label in labels) + 6
    step = max(1, math.ceil(widest / slot))
    shown = [i for i in range(len(labels)) if (len(labels) - 1 - i) % step == 0]
    y = TOP + PLOT_HEIGHT + 14
    return [_text(LEFT + slot * (i + 0.5), y, labels[i], anchor="middle", fill=MUTED, size=10) for i in shown]


def _legend(names: list[str], colours: list[str], y: float) -> tuple[list[str], float]:
    """Swatches and names, wrapped into rows of the chart's width; (parts, height taken)."""
    parts, x, rows = [], float(LEFT), 0
    for index, name in enumerate(names):
        if not name:
            continue
        width = 14 + _text_width(name) + 12
        if x + width > WIDTH - RIGHT and x > LEFT:
            x, rows = float(LEFT), rows + 1
        top = y + rows * LEGEND_ROW
        parts.append(
            f'<rect x="{_n(x)}" y="{_n(top)}" width="10" height="10" rx="2" fill="{colours[index]}"/>'
        )
        parts.append(_text(x + 14, top + 9, name, anchor="start", size=10))
        x += width
    return parts, ((rows + 1) * LEGEND_ROW if parts else 0)


def _describe(labels: Sequence[str], series: Series, unit: str) -> str:
    """Every value, for a screen reader: "label: value, …" per series."""
    described = []
    for name, values in series:
        pairs = [
            f"{label}: {_number(v)}{unit}" for label, v in zip(labels, values, strict=False) if v is not None
        ]
        described.append((f"{name} — " if name else "") + ", ".join(pairs))
    return "; ".join(described)


# --- scale and numbers -----------------------------------------------------------------------------


def _scale(values: Sequence[float]) -> Scale:
    """A top of 1, 2, 2.5 or 5 times a power of ten at or above the largest value, and 4 or 5 grid
    lines; counts (all values whole) never get a fractional grid line."""
    largest = max(values, default=0.0)
    whole = all(float(v).is_integer() for v in values)
    if largest <= 0:
        return Scale(1.0, [0.0, 1.0])
    raw = largest / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if whole:
        step = max(1.0, math.ceil(step))
    top = math.ceil(largest / step - 1e-9) * step
    return Scale(top, [step * i for i in range(round(top / step) + 1)])


def _number(value: float) -> str:
    """Short: 12, 0.25, 7.5, 12.3k, 4.5M, 1.2G (three significant digits at most)."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else str(round(value))


def _sum(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return sum(found) if found else None


# --- elements ------------------------------------------------------------------------------------


def _plot_width() -> float:
    return WIDTH - LEFT - RIGHT


def _colours(series: Series, alarm: Collection[str]) -> list[str]:
    """Each series' colour: PALETTE's in order for the ordinary ones, ALARM's for the failures."""
    found, ordinary, failing = [], 0, 0
    for name, _ in series:
        if name in alarm:
            found.append(ALARM[failing % len(ALARM)])
            failing += 1
        else:
            found.append(PALETTE[ordinary % len(PALETTE)])
            ordinary += 1
    return found


def _n(value: float) -> str:
    """A coordinate with at most one decimal."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text_width(text: str) -> float:
    return sum(WIDE_CHAR_WIDTH if ord(char) > 0x2E80 else CHAR_WIDTH for char in text)


def _clip(text: str, width: float) -> str:
    """`text`, cut with an ellipsis to fit `width` units."""
    if _text_width(text) <= width:
        return text
    while text and _text_width(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _text(
    x: float, y: float, text: str, *, anchor: str, fill: str = INK, size: int = FONT, weight: str = "normal"
) -> str:
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" fill="{fill}" font-size="{size}" '
        f'font-weight="{weight}">{escape(text)}</text>'
    )


def _rect(x: float, y: float, width: float, height: float, fill: str, tip: str) -> str:
    return (
        f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(width)}" height="{_n(max(height, 0.5))}" fill="{fill}">'
        f"<title>{escape(tip)}</title></rect>"
    )


def _dot(x: float, y: float, fill: str, tip: str) -> str:
    return f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2.5" fill="{fill}"><title>{escape(tip)}</title></circle>'


def _polyline(points: list[tuple[float, float]], colour: str) -> str:
    if len(points) < 2:
        return ""
    coords = " ".join(f"{_n(x)},{_n(y)}" for x, y in points)
    return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.8"/>'
