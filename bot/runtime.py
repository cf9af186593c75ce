"""Everything the web tier and the job workers share, built from the settings in one place.

Outside runtime (the LLM, WeChat's API) are built on first use, so that a web process that
only answers pushes never opens a connection to them.
"""

from __future__ import annotations

from functools import cached_property

import redis

from bot.config import Settings
from bot.delivery.active import ActiveSender
from bot.llm import ChatBackend, make_backend
from bot.llm.openai_backend import make_client
from bot.media.images import ImageMaker
from bot.media.moderation import Moderator
from bot.media.voice import Transcriber
from bot.store.answers import AnswerStore
from bot.store.history import History
from bot.store.limits import Limits
from bot.store.metrics import Metrics
from bot.store.overrides import Overrides
from bot.store.pushes import PushLog
from bot.store.users import AdminStore
from bot.wechat.api import WeChatAPI

#: one connection per busy thread: web threads and job threads each hold one for short commands
REDIS_MAX_CONNECTIONS = 1024


def make_redis(settings: Settings, socket_timeout: float | None = 10) -> redis.Redis:
    """A client for short commands; pub/sub listeners pass socket_timeout=None (they idle)."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=socket_timeout,
        max_connections=REDIS_MAX_CONNECTIONS,
        health_check_interval=30,
    )


class Runtime:
    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = client or make_redis(settings)
        self.answers = AnswerStore(self.redis, settings.answer_ttl)
        self.pushes = PushLog(self.redis)
        self.metrics = Metrics(self.redis)
        self.admin = AdminStore(self.redis, settings.wechat_admin_openids)
        self.limits = Limits(self.redis, settings.user_rate_per_minute)
        self.overrides = Overrides(self.redis, settings)
        self.history = History(
            self.redis,
            max_turns=settings.history_max_turns,
            max_chars=settings.history_max_chars,
            ttl=settings.history_ttl,
        )

    def close(self) -> None:
        """Release the pooled connections of every client this process has built."""
        for name in ("backend", "images", "transcriber", "moderator", "wechat"):
            client = self.__dict__.get(name)  # built on first use: close only what exists
            if client is not None:
                client.close()
        self.redis.close()

    @cached_property
    def backend(self) -> ChatBackend:
        return make_backend(self.settings)

    @cached_property
    def wechat(self) -> WeChatAPI:
        return WeChatAPI(self.settings, self.redis, self.metrics)

    @cached_property
    def sender(self) -> ActiveSender:
        return ActiveSender(
            self.answers, self.wechat, self.redis, self.settings.wechat_cs_quota, self.metrics
        )

    @cached_property
    def images(self) -> ImageMaker:
        return ImageMaker(self.settings, self.wechat)

    @cached_property
    def moderator(self) -> Moderator:
        client = make_client(self.settings) if self.settings.moderation else None
        return Moderator(self.settings, client)

    @cached_property
    def transcriber(self) -> Transcriber:
        return Transcriber(self.settings, self.wechat)
