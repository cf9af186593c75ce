"""Settings an admin changes in chat (/system, /welcome, /quota): kept in Redis, read on every use,
so that every process sees the change at once. Unset means: the environment's value."""

from __future__ import annotations

import redis

from bot.config import Settings
from bot.store import keys


class Overrides:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings

    def _get(self, name: str) -> str | None:
        value = self.redis.hget(keys.OVERRIDES, name)
        return None if value is None else str(value)

    def set(self, name: str, value: str) -> None:
        self.redis.hset(keys.OVERRIDES, name, value)

    def system_prompt(self) -> str:
        found = self._get("system_prompt")
        return self.settings.system_prompt if found is None else found

    def welcome_text(self) -> str | None:
        return self._get("welcome_text") or self.settings.welcome_text or None

    def daily_quota(self) -> int:
        found = self._get("daily_quota")
        return self.settings.user_daily_quota if found is None else int(found)
