"""Logging set-up shared by the web tier, the workers and the launcher."""

from __future__ import annotations

import logging

from bot.config import Settings


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )
