"""The console's first page: how the bot is doing today and over 30 days, and its machinery.

    GET  /console/        figures, charts (SVG drawn on the server) and the machinery; reloads itself
                          every REFRESH_SECONDS (a meta refresh: the page runs no script)

The figures come from `figures.gather` (Redis only: the page never calls the LLM or WeChat); the
charts from `charts`; the page's texts, Chinese, from its template.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, render_template

import bot.console.charts as charts
import bot.console.figures as figures
from bot.runtime import Runtime

#: the page reloads itself this often (seconds)
REFRESH_SECONDS = 30


def size(count: float) -> str:
    """A number of bytes as an operator reads it: 812 KB, 12.3 MB, 1.20 GB."""
    for limit, unit in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")):
        if count >= limit:
            return f"{count / limit:.3g} {unit}"
    return f"{int(count)} B"


def register(bp: Blueprint, runtime: Runtime) -> None:
    """Add the overview (endpoint `console.overview`, /console/)."""
    zone = runtime.settings.zone

    def when(epoch: float | None) -> str:
        if not epoch:
            return ""
        return datetime.fromtimestamp(float(epoch), zone).strftime("%Y-%m-%d %H:%M:%S")

    @bp.get("/")
    def overview() -> Response:
        html = render_template(
            "console/overview.html",
            o=figures.gather(runtime),
            charts=charts,
            named=figures.with_names,
            size=size,
            when=when,
            refresh=REFRESH_SECONDS,
            timezone=runtime.settings.timezone,
        )
        return Response(html, mimetype="text/html")
