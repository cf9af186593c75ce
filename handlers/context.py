"""What a handler may use: the sender, the shared services and the job queue."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from bot.answering.jobs import Jobs
from bot.runtime import Services
from bot.store import keys


@dataclass(frozen=True)
class Context:
    openid: str
    push_key: str
    services: Services
    jobs: Jobs

    @cached_property
    def is_admin(self) -> bool:
        return self.services.admin.is_admin(self.openid)

    def delivery_mode(self) -> str:
        """`active` only for accounts that may use the customer-service API right now."""
        if self.services.settings.wechat_reply_mode != "active":
            return "passive"
        return "passive" if self.services.redis.exists(keys.CS_UNAUTHORIZED) else "active"

    def recording_minutes(self) -> bool:
        return bool(self.services.redis.exists(keys.minutes_on(self.openid)))
