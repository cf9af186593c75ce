"""The report of the last /broadcast."""

from __future__ import annotations

import redis

from bot.store import keys


class BroadcastLog:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def save_report(self, report: str) -> None:
        self.redis.set(keys.BROADCAST_REPORT, report)

    def last_report(self) -> str | None:
        found = self.redis.get(keys.BROADCAST_REPORT)
        return None if found is None else str(found)
