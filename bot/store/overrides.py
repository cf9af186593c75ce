"""Settings an admin changes at run time, in the chat (/system, /welcome, /quota) or in the operator
console (those and the per-minute rate limit, the sensitive words, the models followers may pick with
/model): kept in Redis, read on every use, so that every process sees the change at once. Unset means:
the environment's value; `clear` goes back to it."""

from __future__ import annotations

import json

import redis

from bot.config import Settings
from bot.store import keys

#: every override there is (the fields of the OVERRIDES hash)
NAMES = (
    "system_prompt",
    "welcome_text",
    "daily_quota",
    "rate_per_minute",
    "sensitive_words",
    "allowed_models",
)


class Overrides:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings

    def _get(self, name: str) -> str | None:
        value = self.redis.hget(keys.OVERRIDES, name)
        return None if value is None else str(value)

    def set(self, name: str, value: str) -> None:
        if name not in NAMES:
            raise ValueError(f"no override named {name!r}")
        self.redis.hset(keys.OVERRIDES, name, value)

    def clear(self, name: str) -> None:
        """Back to the environment's value."""
        self.redis.hdel(keys.OVERRIDES, name)

    def overridden(self) -> frozenset[str]:
        """The names set at run time (the others are the environment's)."""
        return frozenset(str(name) for name in self.redis.hkeys(keys.OVERRIDES))

    def system_prompt(self) -> str:
        found = self._get("system_prompt")
        return self.settings.system_prompt if found is None else found

    def welcome_text(self) -> str | None:
        return self._get("welcome_text") or self.settings.welcome_text or None

    def daily_quota(self) -> int:
        found = self._get("daily_quota")
        return self.settings.user_daily_quota if found is None else int(found)

    def rate_per_minute(self) -> int:
        """Messages per user per minute (0: unlimited); USER_RATE_PER_MINUTE unless overridden."""
        found = self._get("rate_per_minute")
        return self.settings.user_rate_per_minute if found is None else int(found)

    def set_list(self, name: str, values: list[str]) -> None:
        """A list override (sensitive_words, allowed_models), kept as JSON."""
        self.set(name, json.dumps(values, ensure_ascii=False))

    def sensitive_words(self) -> list[str] | None:
        """The sensitive words set at run time (they replace SENSITIVE_WORDS and its file); None: the
        environment's."""
        return self._list("sensitive_words")

    def allowed_models(self) -> list[str] | None:
        """The models followers may pick with /model, among ALLOWED_MODELS; None: all of them."""
        return self._list("allowed_models")

    def _list(self, name: str) -> list[str] | None:
        found = self._get(name)
        return None if found is None else [str(item) for item in json.loads(found)]
