"""A push's delivery is logged once: the webhook's line, and gunicorn's access line only without it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from bot.logs import APP_LOGGED
from tests.conftest import Bot


def environs_of(bot: Bot) -> list[dict[str, Any]]:
    """The WSGI environ of every request the app serves from now on (what gunicorn's logger reads)."""
    seen: list[dict[str, Any]] = []
    inner = bot.app.wsgi_app

    def spy(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ)
        return inner(environ, start_response)

    bot.app.wsgi_app = spy  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize(("log_level", "app_line"), [("INFO", True), ("WARNING", False)])
def test_the_access_line_is_left_out_only_when_the_webhook_wrote_its_own(
    make_bot: Callable[..., Bot], caplog: pytest.LogCaptureFixture, log_level: str, app_line: bool
) -> None:
    """The webhook's line is INFO while gunicorn's access logger is INFO whatever LOG_LEVEL: with
    LOG_LEVEL=WARNING a push left no line at all once its access line was dropped."""
    bot = make_bot(with_worker=False, log_level=log_level)
    seen = environs_of(bot)
    assert bot.simulator().send_event("user-1", "subscribe").attempts[-1].status == 200
    written = [r for r in caplog.records if r.name == "bot.webhook" and "plan=" in r.getMessage()]
    assert bool(written) is app_line
    assert [bool(environ.get(APP_LOGGED)) for environ in seen] == [app_line]
