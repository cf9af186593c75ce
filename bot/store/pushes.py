"""Inbound pushes in Redis: de-duplication, attempt counting and the one reply each push gets.

WeChat delivers a message up to three times with the same MsgId, possibly to different processes
or machines. The first delivery decides what to do (its *plan*); every delivery of the same
push then gives the same reply, and only the first one starts any work.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Literal

import redis
from wechatpy.messages import BaseMessage

from bot.store import keys

PlanKind = Literal["reply", "image", "silent", "ask", "fetch"]


@dataclass(frozen=True)
class Plan:
    """What a push asks of us: a ready reply, nothing, or an answer to deliver."""

    kind: PlanKind
    text: str = ""
    answer_id: str = ""
    media_id: str = ""
    delivery: str = "passive"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> Plan:
        return cls(**json.loads(raw))


def dedup_key(message: BaseMessage) -> str:
    """MsgId for messages; FromUserName + CreateTime + Event for events (they have no MsgId)."""
    if getattr(message, "id", 0):
        return f"id:{message.id}"
    event = getattr(message, "event", "") or message.type
    created = int(message.create_time.timestamp()) if message.create_time else 0
    return f"ev:{message.source}:{created}:{event}"


class PushLog:
    """The shared record of every push: how many times it arrived, its plan and its reply."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def arrive(self, key: str) -> int:
        """Count one more delivery of this push; 1 means it is new."""
        pipe = self.redis.pipeline()
        pipe.hincrby(keys.message(key), "attempts", 1)
        pipe.expire(keys.message(key), keys.MESSAGE_TTL)
        attempts, _ = pipe.execute()
        return int(attempts)

    def save_plan(self, key: str, plan: Plan) -> None:
        self.redis.hset(keys.message(key), "plan", plan.to_json())

    def plan(self, key: str, wait: float = 2.0) -> Plan | None:
        """The plan the first delivery made (waits briefly in case it is being made right now)."""
        deadline = time.monotonic() + wait
        while True:
            raw = self.redis.hget(keys.message(key), "plan")
            if raw is not None:
                return Plan.from_json(str(raw))
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def reply(self, key: str) -> str | None:
        """The text this push was already answered with, if any."""
        raw = self.redis.hget(keys.message(key), "reply")
        return None if raw is None else str(raw)

    def save_reply(self, key: str, text: str) -> None:
        self.redis.hset(keys.message(key), "reply", text)

    def bind_signature(
        self, timestamp: str, nonce: str, digest: str, accepted_until: float, now: float
    ) -> bool:
        """Bind a signature (timestamp + nonce) to the first request it came with (`digest`); False
        when it came with another one before (a replay). One round trip (SET NX GET needs Redis 7).

        The record lives as long as the signature can be accepted — until `accepted_until`, which the
        push's own timestamp sets, not its arrival — and SIGNED_SLACK longer, for a web process
        whose clock is behind `now`'s: a signature is never forgotten while it still opens the door.
        """
        key = keys.signed(timestamp, nonce)
        ttl = max(1, math.ceil(accepted_until - now)) + keys.SIGNED_SLACK
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(key, digest, nx=True, ex=ttl)
        pipe.get(key)
        first = pipe.execute()[1]
        return first is None or first == digest
