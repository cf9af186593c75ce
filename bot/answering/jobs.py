"""Background work on Dramatiq with its Redis broker: the web tier sends, the workers generate.

Dramatiq keeps a message in a per-worker "ack" set until the job returns; when a worker is
killed, its heartbeat stops and another worker requeues the message after
`WORKER_HEARTBEAT_TIMEOUT`. The job itself (bot.answering.generation) makes redelivery harmless.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import suppress
from typing import Any

import dramatiq
import redis
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import dq_name
from dramatiq.message import Message
from redis.client import PubSub

from bot.answering.chores import broadcast, record_minutes_piece
from bot.answering.generation import REDIS_GONE, AnswerJob
from bot.answering.paging import split_pages
from bot.config import Settings
from bot.delivery.active import delivery_mode
from bot.knowledge.reports import deliver_report
from bot.knowledge.sync import run_sync
from bot.runtime import DRIVER_INFO, REDIS_MAX_CONNECTIONS, Runtime
from bot.store.wakeups import JobWakeups

log = logging.getLogger(__name__)

QUEUE = "answers"
#: chance (per million broker commands) of a maintenance pass that requeues dead workers' jobs: every
#: command, since an idle consumer sends one a second (the pass is two range reads when nobody died)
MAINTENANCE_CHANCE = 1_000_000
#: how often an idle worker looks at the queue without a wake-up, and how often each idle worker thread
#: looks at its work queue (ms; Dramatiq's default). A job starts at its wake-up (WakingRedisBroker):
#: this is only the fallback, and a shorter one cost every idle thread a wake-up ten times a second —
#: 2,560 a second with the default 2 × 128 threads, all taking the GIL from the busy ones (bench/)
WORKER_POLL_MS = 1000
#: a job may run this long (the LLM has its own, shorter timeouts)
TIME_LIMIT_MS = 10 * 60 * 1000
#: a sync of the account's articles may run this long (thousands of articles, each embedded)
KB_SYNC_TIME_LIMIT_MS = 60 * 60 * 1000


def worker_command(processes: int, threads: int) -> tuple[list[str], dict[str, str]]:
    """The command line (and environment additions) that runs the job workers.

    Each process prefetches only as many jobs as it has threads: with Dramatiq's default (twice
    the threads) one process hoards jobs that another process has idle threads for. An idle
    consumer waits for the wake-up that comes with each job (WakingRedisBroker), and looks at the
    queue every WORKER_POLL_MS even without one (a lost wake-up costs no more than that).
    """
    command = [sys.executable, "-m", "bot.answering.worker", "--queues", QUEUE]
    command += ["--processes", str(processes), "--threads", str(threads)]
    return command, {"dramatiq_queue_prefetch": str(threads), "dramatiq_worker_timeout": str(WORKER_POLL_MS)}


def make_broker(settings: Settings) -> RedisBroker:
    pool = redis.ConnectionPool.from_url(
        settings.redis_url, max_connections=REDIS_MAX_CONNECTIONS, driver_info=DRIVER_INFO
    )
    return WakingRedisBroker(
        connection_pool=pool,
        heartbeat_timeout=int(settings.worker_heartbeat_timeout * 1000),
        maintenance_chance=MAINTENANCE_CHANCE,
    )


class WakingRedisBroker(RedisBroker):
    """Dramatiq's Redis broker with a wake-up published next to each job it queues: an idle consumer
    waits for it instead of sleeping until its next poll, so a job starts as soon as it is queued (a
    100 ms poll made a question wait 27–309 ms before its LLM request; bench/ measures the pick-up).
    Queueing, fetching, acknowledging and requeueing after a crash are Dramatiq's own, unchanged: the
    wake-up is only a hint, and a lost one costs one poll (WORKER_POLL_MS) at most."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.wakeups = JobWakeups(self.client)

    @property
    def consumer_class(self) -> type[Consumer]:
        return WakingConsumer

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        queued = super().enqueue(message, delay=delay)
        if delay is None:  # a delayed job waits in its delay queue until its time anyway
            try:
                self.wakeups.publish(queued.queue_name)
            except redis.exceptions.RedisError as exc:  # queued all the same: picked up at the next poll
                log.warning("job %s queued without its wake-up: %s", queued.message_id, exc)
        return queued


class WakingConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, whose idle wait ends at a wake-up for its queue instead of sleeping
    out its poll interval (delay queues, which nothing wakes, sleep as before)."""

    def __init__(self, broker: WakingRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, 0)  # 0: the parent's own idle sleep is none
        self.wakeups = broker.wakeups
        self.idle = timeout / 1000
        self.wakes = not queue_name.endswith(dq_name(""))
        self.pubsub: PubSub | None = None

    def __next__(self) -> MessageProxy | None:
        found = super().__next__()
        if found is None:
            self._idle()
        return found

    def _idle(self) -> None:
        """Until a wake-up for the queue, or for `idle` seconds at most."""
        if not self.wakes:
            time.sleep(self.idle)
            return
        try:
            if self.pubsub is None:
                self.pubsub = self.wakeups.subscribe(self.queue_name)
            if self.pubsub.get_message(timeout=self.idle) is not None:
                while self.pubsub.get_message(timeout=0) is not None:  # one fetch for a burst of jobs
                    pass
        except redis.exceptions.RedisError as exc:  # Redis blinked: poll until it is back
            log.warning("job wake-ups of %s lost (%s); polling", self.queue_name, exc)
            self._unsubscribe()
            time.sleep(self.idle)

    def _unsubscribe(self) -> None:
        if self.pubsub is not None:
            pubsub, self.pubsub = self.pubsub, None
            with suppress(redis.exceptions.RedisError):
                pubsub.close()

    def close(self) -> None:
        self._unsubscribe()
        super().close()


#: how long a job whose run lost Redis waits for it to come back before its retry is enqueued (a
#: restart of a persistent Redis takes a few seconds; a failover of Sentinel or a managed Redis ~30 s)
REDIS_RETURN_WAIT = 60.0
REDIS_PING_EVERY = 0.5

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
        # never retried: a redelivered or continued job goes on from the broadcast's progress in Redis
        self.broadcast_actor = self._actor(self._broadcast, "broadcast", {"max_retries": 0}, priority=10)
        # never retried either: a sync is incremental, the admin sends /kb sync again if it failed
        kb_options = {"max_retries": 0, "time_limit": KB_SYNC_TIME_LIMIT_MS}
        self.kb_sync_actor = self._actor(self._sync_knowledge, "sync_knowledge", kb_options, priority=10)

    def _actor(self, fn: Any, name: str, options: dict[str, Any], priority: int = 0) -> dramatiq.Actor:
        options = dict(options)
        return dramatiq.Actor(
            fn, broker=self.broker, actor_name=name, queue_name=QUEUE, priority=priority, options=options
        )

    def enqueue(self, answer_id: str) -> None:
        self.actor.send(answer_id)

    def enqueue_minutes_piece(self, openid: str, media_id: str, index: int, meeting: str) -> None:
        self.minutes_actor.send(openid, media_id, index, meeting)

    def enqueue_broadcast(self, broadcast_id: str) -> None:
        self.broadcast_actor.send(broadcast_id)

    def enqueue_kb_sync(self, admin: str, token: str, notify: bool = True) -> None:
        """Sync the account's articles into the knowledge base under the lock `token` claimed; the report
        goes to `admin` in the chat (`notify`), and is kept for /kb and the console in any case."""
        self.kb_sync_actor.send(admin, token, notify)

    def _sync_knowledge(self, admin: str, token: str, notify: bool = True) -> None:
        """`notify` False: started from the console, whose page shows the report (a chat message about a
        sync the admin did not ask for in the chat would puzzle them)."""
        runtime = self.runtime
        if runtime.admin.is_banned(admin):  # banned since asking: nothing of it runs, the lock is free again
            runtime.knowledge.store.release_sync(token)
            log.info("knowledge base sync asked by %s not run: banned since", admin)
            return
        report = run_sync(runtime.knowledge, runtime.wechat, token, by=admin)
        if report is not None and notify:  # None: another sync runs, and will report
            mode = delivery_mode(runtime.settings, runtime.wechat_state)
            pages = split_pages(report, self.job.budget)
            deliver_report(runtime.answers, runtime.sender, mode, admin, pages)

    def _redis_back(self, patience: float) -> bool:
        """Wait up to `patience` seconds for Redis to answer a PING again; whether it did."""
        deadline = time.monotonic() + patience
        while True:
            try:
                self.runtime.workers.ping()
                return True
            except redis.exceptions.RedisError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(REDIS_PING_EVERY)

    def _record_minutes_piece(self, openid: str, media_id: str, index: int, meeting: str = "") -> None:
        """`meeting` "": a job queued before pieces carried their meeting; it is stale and does nothing."""
        record_minutes_piece(self.runtime, openid, media_id, index, meeting)

    def _broadcast(self, broadcast_id: str) -> None:
        def again(delay: float) -> None:
            self.broadcast_actor.send_with_options(args=(broadcast_id,), delay=int(delay * 1000))

        broadcast(self.runtime, broadcast_id, again)

    def _generate_answer(self, answer_id: str) -> None:
        try:
            self._run_answer(answer_id)
        except REDIS_GONE:
            # Dramatiq enqueues the retry as soon as this raises, and with Redis still away that enqueue
            # fails and the message is acked once Redis is back: the answer would be lost. Wait for it.
            if not self._redis_back(REDIS_RETURN_WAIT):
                log.error("answer %s: Redis away for %.0f s; job given up", answer_id, REDIS_RETURN_WAIT)
            raise

    def _run_answer(self, answer_id: str) -> None:
        outcome = self.job.run(answer_id)
        # another run holds the lease, or this one lost it (taken over, or expired while Redis was away:
        # then nobody writes the answer unless it is looked at again): look again when it would expire
        if outcome in ("busy", "lost"):
            delay = self.job.lease_left(answer_id)
            why = "another run holds its lease" if outcome == "busy" else "its run lost the lease"
            log.info("answer %s: %s; looking again in %sms", answer_id, why, delay)
            self.actor.send_with_options(args=(answer_id,), delay=delay)
