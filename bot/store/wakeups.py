"""The job queue's wake-up signal: the web tier publishes one next to each job it queues, and the job
workers' consumers wait on it between polls of Dramatiq's queue (bot/answering/jobs.py), so that a job
starts as soon as it is queued instead of at the next poll.

Only a hint: a wake-up lost (a reconnect, a worker busy) costs at most one poll interval, and what is
queued, fetched, acknowledged and requeued after a crash stays Dramatiq's alone.
"""

from __future__ import annotations

import redis
from redis.client import PubSub

from bot.store import keys


class JobWakeups:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def publish(self, queue: str) -> None:
        self.redis.publish(keys.job_wakeup(queue), b"1")

    def subscribe(self, queue: str) -> PubSub:
        """A subscription to `queue`'s wake-ups (close it when done); its confirmation is not a wake-up."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(keys.job_wakeup(queue))
        return pubsub
