"""The pub/sub notice "something new to deliver for this user", sent by the answer store and
heard by the webhook's waiters (bot/delivery/waiter.py)."""

from __future__ import annotations

import redis
from redis.client import PubSub

from bot.store import keys


class ReadyNotices:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def publish(self, openid: str) -> None:
        self.redis.publish(keys.ready_channel(openid), "1")

    def subscribe(self) -> PubSub:
        """A pub/sub connection that hears every user's notices (close it when done)."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(keys.READY_PATTERN)
        return pubsub

    @staticmethod
    def openid_of(channel: str) -> str:
        return channel[len(keys.ready_channel("")) :]
