"""The object graph of one process, web tier or job worker, built from the settings in one place
and closed in one place.

Every Redis key is read and written by a store of `bot/store/`; the runtime hands out the stores,
never the Redis client. Outside services (the LLM, WeChat's API, images, transcription,
moderation) are built on first use, so that a web process that only answers pushes never opens a
connection to them.
"""

from __future__ import annotations

from functools import cached_property

import redis
from redis.driver_info import DriverInfo

from bot.config import Settings
from bot.delivery.active import ActiveSender
from bot.experts import ExpertRouter
from bot.experts.served import ServedModels
from bot.knowledge.base import KnowledgeBase
from bot.llm import ChatBackend, default_model, make_backend
from bot.llm.openai_backend import make_client
from bot.media.images import ImageMaker
from bot.media.moderation import Moderator
from bot.media.vision import Vision
from bot.media.voice import Transcriber
from bot.pages.links import PageLinks
from bot.store.answers import AnswerStore
from bot.store.broadcasts import BroadcastLog
from bot.store.console import ConsoleStore
from bot.store.history import History
from bot.store.knowledge import KnowledgeStore
from bot.store.limits import Limits
from bot.store.metrics import Metrics
from bot.store.minutes import MinutesStore
from bot.store.overrides import Overrides
from bot.store.pages import PageStore
from bot.store.photos import PhotoStore
from bot.store.pushes import PushLog
from bot.store.server import ServerInfo
from bot.store.stats import DailyStats
from bot.store.users import AdminStore, ModelChoices
from bot.store.wechat import WeChatState
from bot.store.workers import WorkerStore
from bot.wechat.api import WeChatAPI

#: one connection per busy thread: web threads and job threads each hold one for short commands
REDIS_MAX_CONNECTIONS = 1024
#: what each connection tells Redis about its client (CLIENT SETINFO), worked out once: redis-py
#: otherwise reads its package metadata from disk for every new connection (0.4 ms), and a burst of
#: threads that each need a connection at once (100 answers finishing together) pays it every time
DRIVER_INFO = DriverInfo()


def make_redis(settings: Settings, socket_timeout: float | None = 10) -> redis.Redis:
    """A client for short commands; pub/sub listeners pass socket_timeout=None (they idle)."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=socket_timeout,
        max_connections=REDIS_MAX_CONNECTIONS,
        health_check_interval=30,
        driver_info=DRIVER_INFO,
    )


class Runtime:
    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self._redis = client or make_redis(settings)
        zone = settings.zone
        self.answers = AnswerStore(self._redis, settings.answer_ttl)
        self.pushes = PushLog(self._redis)
        self.metrics = Metrics(self._redis, zone)
        self.admin = AdminStore(self._redis, settings.wechat_admin_openids)
        self.overrides = Overrides(self._redis, settings)
        configured_models = [default_model(settings), *settings.allowed_models]
        self.models = ModelChoices(self._redis, configured_models, self.overrides.allowed_models)
        # the environment's rate limit: Limits reads the run-time override in its scripts (no round trip)
        self.limits = Limits(self._redis, settings.user_rate_per_minute, zone)
        self.stats = DailyStats(self._redis, zone)
        self.minutes = MinutesStore(self._redis)
        self.broadcasts = BroadcastLog(self._redis)
        self.wechat_state = WeChatState(self._redis)
        self.workers = WorkerStore(self._redis)
        self.server = ServerInfo(self._redis)
        self.knowledge = KnowledgeBase(KnowledgeStore(self._redis), settings)
        self.pages = PageStore(self._redis)
        self.photos = PhotoStore(self._redis)
        self.console = ConsoleStore(self._redis)
        self.history = History(
            self._redis,
            max_turns=settings.history_max_turns,
            max_chars=settings.history_max_chars,
            ttl=settings.history_ttl,
        )

    def reset_conversation(self, openid: str) -> None:
        """A user starts again (/reset, the console's reset): their conversation, the photo their
        questions were about and the questions still being answered (no context for the next one any more)
        are forgotten together, in one round trip (each store queues its own key)."""
        pipe = self.history.pipeline()
        self.history.clear_in(pipe, openid)
        self.photos.forget_in(pipe, openid)
        self.answers.forget_asked_in(pipe, openid)
        pipe.execute()

    def close(self) -> None:
        """Release the pooled connections of every client this process has built."""
        for name in ("backend", "images", "transcriber", "moderator", "vision", "wechat", "experts"):
            client = self.__dict__.get(name)  # built on first use: close only what exists
            if client is not None:
                client.close()
        self.knowledge.close()
        self.pushes.close()
        self._redis.close()

    @cached_property
    def backend(self) -> ChatBackend:
        return make_backend(self.settings)

    @cached_property
    def experts(self) -> ExpertRouter:
        """The task router (EXPERTS); it asks the backend which models it serves."""
        served = ServedModels(lambda: self.backend.models())
        return ExpertRouter(self.settings, served, self.metrics, default_model(self.settings))

    @cached_property
    def wechat(self) -> WeChatAPI:
        return WeChatAPI(self.settings, self.wechat_state, self.metrics)

    @cached_property
    def sender(self) -> ActiveSender:
        return ActiveSender(
            self.answers, self.wechat, self.wechat_state, self.settings.wechat_cs_quota, self.metrics
        )

    @cached_property
    def images(self) -> ImageMaker:
        return ImageMaker(self.settings, self.wechat)

    @cached_property
    def moderator(self) -> Moderator:
        client = make_client(self.settings) if self.settings.moderation else None
        return Moderator(self.settings, client, words=self.overrides.sensitive_words)

    @cached_property
    def transcriber(self) -> Transcriber:
        return Transcriber(self.settings, self.wechat)

    @cached_property
    def page_links(self) -> PageLinks:
        return PageLinks(self.settings, self.pages)

    @cached_property
    def vision(self) -> Vision:
        return Vision(self.settings, self.wechat)
