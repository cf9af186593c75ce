"""The overview's SVG charts: well-formed XML whatever the data (none, one point, huge numbers, hostile
labels), accessible (an image named by its title and described by its values), and scaled sensibly;
the latency quantiles read from histogram buckets."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import pytest

from bot.console import charts
from bot.console.figures import quantile

SVG = "{http://www.w3.org/2000/svg}"
HOURS = [f"{hour:02d}" for hour in range(24)]
DAYS = [f"11-{day:02d}" for day in range(2, 32)]


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == f"{SVG}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return [node.text or "" for node in root.iter(f"{SVG}text")]


def rects(root: ET.Element) -> list[ET.Element]:
    """The bars: rects that carry a tooltip (legend swatches carry none)."""
    return [node for node in root.iter(f"{SVG}rect") if node.find(f"{SVG}title") is not None]


def test_a_bar_chart_is_an_accessible_image_with_every_value_described() -> None:
    values: list[float | None] = [float(hour) for hour in range(24)]
    root = parse(charts.bars("hours", "今日每小时消息", HOURS, values))
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "hours-title hours-desc"
    assert root.find(f"{SVG}title").text == "今日每小时消息"  # type: ignore[union-attr]
    desc = root.find(f"{SVG}desc").text or ""  # type: ignore[union-attr]
    assert "00: 0" not in desc.split(", ")[1:] and "23: 23" in desc and "05: 5" in desc
    assert len(rects(root)) == 23  # the hour with 0 draws no bar
    assert "今日每小时消息" in texts(root)  # the title is drawn too, for a screenshot or a print


def test_bars_fit_the_plot_and_taller_values_draw_taller_bars() -> None:
    root = parse(charts.bars("b", "t", ["a", "b", "c"], [1, 2, 4]))
    heights = [float(node.get("height", 0)) for node in rects(root)]
    assert heights == sorted(heights) and heights[2] == pytest.approx(charts.PLOT_HEIGHT)
    for node in rects(root):
        assert charts.LEFT <= float(node.get("x", 0)) <= charts.WIDTH - charts.RIGHT
        assert float(node.get("y", 0)) >= charts.TOP


def test_labels_and_titles_are_escaped() -> None:
    hostile = '<script>alert("x")</script>&'
    root = parse(charts.stacked("s", hostile, [hostile], [(hostile, [1.0]), ("b", [2.0])]))
    assert hostile in texts(root)  # drawn as text, not as markup
    assert root.find(f".//{SVG}script") is None
    ranked = parse(charts.ranked("r", "t", [(hostile, 3.0)]))
    assert ranked.find(f".//{SVG}script") is None
    assert any(hostile.startswith(text.rstrip("…")) for text in texts(ranked))
    with pytest.raises(ET.ParseError):  # the check above is real: unescaped, it would not parse
        ET.fromstring(f"<svg>{hostile}</svg>")


def test_an_id_with_quotes_cannot_break_out_of_its_attribute() -> None:
    root = parse(charts.bars('x" onload="alert(1)', "t", ["a"], [1]))
    assert root.get("onload") is None


def test_no_data_says_so_and_still_draws_a_frame() -> None:
    for chart in (
        charts.bars("e", "t", HOURS, [None] * 24, empty="暂无数据"),
        charts.bars("e", "t", [], [], empty="暂无数据"),
        charts.lines("e", "t", DAYS, [("p50", [None] * 30), ("p95", [0.0] * 30)], empty="暂无数据"),
        charts.stacked("e", "t", DAYS, [], empty="暂无数据"),
        charts.ranked("e", "t", [], empty="暂无数据"),
    ):
        root = parse(chart)
        assert "暂无数据" in texts(root)
        assert root.find(f"{SVG}desc").text == "暂无数据"  # type: ignore[union-attr]
        assert not rects(root) and root.find(f".//{SVG}polyline") is None


def test_one_point_draws_a_dot_and_no_line() -> None:
    root = parse(charts.lines("one", "t", ["12-01"], [("消息", [7.0])]))
    assert len(list(root.iter(f"{SVG}circle"))) == 1
    assert root.find(f".//{SVG}polyline") is None
    assert "12-01" in texts(root)


def test_a_missing_value_breaks_the_line() -> None:
    root = parse(charts.lines("gap", "t", ["a", "b", "c", "d", "e"], [("p95", [1.0, 2.0, None, 3.0, 4.0])]))
    assert len(list(root.iter(f"{SVG}polyline"))) == 2
    assert len(list(root.iter(f"{SVG}circle"))) == 4


def test_large_numbers_are_short_on_the_axis_and_in_the_description() -> None:
    root = parse(charts.bars("big", "t", ["a", "b"], [123_456_789.0, 9_876_543_210.0]))
    labels = texts(root)
    assert "9.88G" in (root.find(f"{SVG}desc").text or "")  # type: ignore[union-attr]
    assert any(label.endswith("G") for label in labels) and "10G" in labels
    assert all(len(label) <= 6 for label in labels if label != "t")


def test_counts_never_get_a_fractional_grid_line() -> None:
    root = parse(charts.bars("few", "t", ["a"], [3.0]))
    assert [t for t in texts(root) if t not in ("t", "a")] == ["0", "1", "2", "3"]


def test_seconds_keep_their_fractions() -> None:
    root = parse(charts.lines("s", "t", ["a", "b"], [("p50", [0.3, 0.9])], unit="s"))
    assert "0.25s" in texts(root) and "1s" in texts(root)


def test_thirty_days_of_labels_do_not_overlap_on_a_phone() -> None:
    root = parse(charts.stacked("d", "t", DAYS, [("a", [1.0] * 30), ("b", [2.0] * 30)]))
    shown = [float(node.get("x", 0)) for node in root.iter(f"{SVG}text") if node.text in DAYS]
    assert DAYS[-1] in texts(root) and 5 <= len(shown) < 30
    gaps = [b - a for a, b in itertools.pairwise(shown)]
    assert min(gaps) >= len("11-02") * charts.CHAR_WIDTH


def test_a_stack_has_a_legend_that_wraps_inside_the_chart() -> None:
    names = [f"第{n}次请求" for n in range(1, 9)]
    root = parse(charts.stacked("l", "t", ["a"], [(name, [1.0]) for name in names]))
    assert all(name in texts(root) for name in names)
    width, height = map(float, (root.get("viewBox") or "").split()[2:])
    assert width == charts.WIDTH
    for node in root.iter(f"{SVG}text"):
        assert 0 <= float(node.get("y", 0)) <= height


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ([(1.0, 0), (2.0, 0), (math.inf, 0)], 0.5, None),
        ([(1.0, 10), (2.0, 0), (math.inf, 0)], 0.5, 0.5),  # linear within the first bucket, from 0
        ([(1.0, 5), (2.0, 5), (math.inf, 0)], 0.95, 1.9),
        ([(1.0, 1), (2.0, 0), (math.inf, 9)], 0.95, 2.0),  # in +Inf: the largest finite bound
    ],
)
def test_quantiles_from_buckets(buckets: list[tuple[float, float]], q: float, expected: float | None) -> None:
    found = quantile(buckets, q)
    assert found == (None if expected is None else pytest.approx(expected))


def test_a_ranked_chart_cuts_no_label_that_fits_and_cuts_one_too_long() -> None:
    """The room for the labels was the widest label plus less than its margins: it was always cut."""
    root = parse(charts.ranked("r", "t", [("超时", 3.0), ("调用失败", 1.0), ("HTTP 429", 2.0)]))
    assert texts(root)[1::2] == ["超时", "HTTP 429", "调用失败"]  # the title, then each label and value
    two = parse(charts.ranked("r", "t", [("超时", 3.0), ("调用失败", 1.0)]))
    assert texts(two)[1::2] == ["超时", "调用失败"]
    long = "模型服务返回了一个非常长的错误原因说明文字"
    cut = texts(parse(charts.ranked("r", "t", [(long, 1.0)])))[1]
    assert cut.endswith("…") and long.startswith(cut[:-1]) and len(cut) < len(long)
