"""What a handler may use: the sender, the shared runtime and the job queue."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from bot.answering.jobs import Jobs
from bot.runtime import Runtime
from bot.store import keys


@dataclass(frozen=True)
class Context:
    openid: str
    push_key: str
    runtime: Runtime
    jobs: Jobs

    @cached_property
    def is_admin(self) -> bool:
        return self.runtime.admin.is_admin(self.openid)

    def delivery_mode(self) -> str:
        """`active` only for accounts that may use the customer-service API right now."""
        if self.runtime.settings.wechat_reply_mode != "active":
            return "passive"
        return "passive" if self.runtime.redis.exists(keys.CS_UNAUTHORIZED) else "active"

    def recording_minutes(self) -> bool:
        return bool(self.runtime.redis.exists(keys.minutes_on(self.openid)))
