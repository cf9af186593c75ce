"""What a handler may use: the sender, the process's runtime (settings and stores) and the job queue."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from bot.answering.jobs import Jobs
from bot.delivery.active import delivery_mode
from bot.runtime import Runtime
from bot.store.limits import RateTicket


class NotReady(Exception):
    """Raised while planning a push before its arrival (`Context.ahead`) by whatever needs Redis data or
    changes something: the push is then planned after its arrival instead."""


@dataclass(frozen=True)
class Context:
    openid: str
    push_key: str
    runtime: Runtime
    jobs: Jobs
    #: the message's count against the rate limit, taken on its arrival (None: `refusal` counts it)
    rate_ticket: RateTicket | None = None
    #: planning before the push's arrival (Router.ready): only stateless rules and commands may answer
    ahead: bool = False

    @cached_property
    def is_admin(self) -> bool:
        return self.runtime.admin.is_admin(self.openid)

    def delivery_mode(self) -> str:
        return delivery_mode(self.runtime.settings, self.runtime.wechat_state)

    def recording_minutes(self) -> bool:
        if self.ahead:
            raise NotReady("a meeting's state is in Redis")
        return self.runtime.minutes.recording(self.openid)
