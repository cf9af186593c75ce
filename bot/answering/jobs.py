"""Background work on Dramatiq with its Redis broker: the web tier sends, the workers generate.

Dramatiq keeps a message in a per-worker "ack" set until the job returns; when a worker is
killed, its heartbeat stops and another worker requeues the message after
`WORKER_HEARTBEAT_TIMEOUT`. The job itself (bot.answering.generation) makes redelivery harmless.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from bot.answering.chores import broadcast, record_minutes_piece
from bot.answering.generation import AnswerJob
from bot.config import Settings
from bot.runtime import REDIS_MAX_CONNECTIONS, Runtime

log = logging.getLogger(__name__)

QUEUE = "answers"
#: chance (per million broker commands) of a maintenance pass that requeues dead workers' jobs
MAINTENANCE_CHANCE = 100_000
#: how often an idle worker looks at the queue (ms); Dramatiq's default is 1000
WORKER_POLL_MS = 100
#: a job may run this long (the LLM has its own, shorter timeouts)
TIME_LIMIT_MS = 10 * 60 * 1000


def worker_command(processes: int, threads: int) -> tuple[list[str], dict[str, str]]:
    """The command line (and environment additions) that runs the job workers.

    Each process prefetches only as many jobs as it has threads: with Dramatiq's default (twice
    the threads) one process hoards jobs that another process has idle threads for. An idle
    consumer looks at the queue every WORKER_POLL_MS instead of Dramatiq's 1 s: the default cost up
    to 0.6 s of WeChat's 5 s before generation even started (measured in bench/).
    """
    command = [sys.executable, "-m", "bot.answering.worker", "--queues", QUEUE]
    command += ["--processes", str(processes), "--threads", str(threads)]
    return command, {"dramatiq_queue_prefetch": str(threads), "dramatiq_worker_timeout": str(WORKER_POLL_MS)}


def make_broker(settings: Settings) -> RedisBroker:
    pool = redis.ConnectionPool.from_url(settings.redis_url, max_connections=REDIS_MAX_CONNECTIONS)
    return RedisBroker(
        connection_pool=pool,
        heartbeat_timeout=int(settings.worker_heartbeat_timeout * 1000),
        maintenance_chance=MAINTENANCE_CHANCE,
    )


#: a transient failure (e.g. Redis blinked) is retried a few times, quickly
RETRIES = {"max_retries": 3, "min_backoff": 500, "max_backoff": 5000, "time_limit": TIME_LIMIT_MS}


class Jobs:
    """The broker and the actors (answers, meeting pieces, broadcasts), bound to one runtime."""

    def __init__(self, runtime: Runtime, broker: RedisBroker | None = None) -> None:
        self.runtime = runtime
        self.broker = broker or make_broker(runtime.settings)
        self.job = AnswerJob(runtime)
        self.actor = self._actor(self._generate_answer, "generate_answer", RETRIES)
        self.minutes_actor = self._actor(self._record_minutes_piece, "record_minutes_piece", RETRIES)
        # never retried: a retry would message everybody twice
        self.broadcast_actor = self._actor(self._broadcast, "broadcast", {"max_retries": 0}, priority=10)

    def _actor(self, fn: Any, name: str, options: dict[str, Any], priority: int = 0) -> dramatiq.Actor:
        options = dict(options)
        return dramatiq.Actor(
            fn, broker=self.broker, actor_name=name, queue_name=QUEUE, priority=priority, options=options
        )

    def enqueue(self, answer_id: str) -> None:
        self.actor.send(answer_id)

    def enqueue_minutes_piece(self, openid: str, media_id: str, index: int) -> None:
        self.minutes_actor.send(openid, media_id, index)

    def enqueue_broadcast(self, admin: str, text: str) -> None:
        self.broadcast_actor.send(admin, text)

    def _record_minutes_piece(self, openid: str, media_id: str, index: int) -> None:
        record_minutes_piece(self.runtime, openid, media_id, index)

    def _broadcast(self, admin: str, text: str) -> None:
        broadcast(self.runtime, admin, text)

    def _generate_answer(self, answer_id: str) -> None:
        outcome = self.job.run(answer_id)
        if outcome == "busy":  # another run holds the lease: look again when it would expire
            delay = self.job.lease_left(answer_id)
            log.info("answer %s is leased by another run; retrying in %sms", answer_id, delay)
            self.actor.send_with_options(args=(answer_id,), delay=delay)
