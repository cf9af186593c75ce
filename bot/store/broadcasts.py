"""Broadcasts (/broadcast): each one's audience, fixed when it starts, and its progress, so that a
job redelivered after its worker died, or continued in the next batch, goes on where it stopped.

Each follower's place is claimed with one HINCRBY before the send: no two runs send to the same
follower. A run killed between a claim and its record leaves that one follower *unknown* (it may or
may not have got the message): a broadcast is sent at most once to each follower, never twice.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis
from redis.typing import EncodableT, FieldT

from bot.store import keys


@dataclass(frozen=True)
class Progress:
    admin: str
    text: str
    total: int
    claimed: int
    sent: int
    failed: int
    last_claim: float
    reported: bool

    @property
    def recorded(self) -> int:
        return self.sent + self.failed

    @property
    def unknown(self) -> int:
        return min(self.claimed, self.total) - self.recorded


class BroadcastLog:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def create(self, admin: str, text: str, audience: list[str]) -> str:
        broadcast_id = uuid.uuid4().hex
        record, members = keys.broadcast(broadcast_id), keys.broadcast_audience(broadcast_id)
        pipe = self.redis.pipeline()
        fields: dict[FieldT, EncodableT] = {"admin": admin, "text": text, "total": len(audience)}
        fields |= {"claimed": 0, "sent": 0, "failed": 0}
        pipe.hset(record, mapping=fields)
        if audience:
            pipe.rpush(members, *audience)
        pipe.expire(record, keys.BROADCAST_TTL)
        pipe.expire(members, keys.BROADCAST_TTL)
        pipe.execute()
        return broadcast_id

    def progress(self, broadcast_id: str) -> Progress | None:
        fields = self.redis.hgetall(keys.broadcast(broadcast_id))
        if not fields:
            return None
        return Progress(
            admin=str(fields.get("admin", "")),
            text=str(fields.get("text", "")),
            total=int(fields.get("total", 0)),
            claimed=int(fields.get("claimed", 0)),
            sent=int(fields.get("sent", 0)),
            failed=int(fields.get("failed", 0)),
            last_claim=float(fields.get("last_claim", 0)),
            reported=bool(fields.get("reported")),
        )

    def claim_next(self, broadcast_id: str, total: int) -> str | None:
        """The next follower to send to, now this run's alone; None when the audience is done."""
        pipe = self.redis.pipeline()
        pipe.hincrby(keys.broadcast(broadcast_id), "claimed", 1)
        pipe.hset(keys.broadcast(broadcast_id), "last_claim", time.time())
        index = int(pipe.execute()[0]) - 1
        if index >= total:
            return None
        found = self.redis.lindex(keys.broadcast_audience(broadcast_id), index)
        return None if found is None else str(found)

    def record(self, broadcast_id: str, sent: bool) -> None:
        self.redis.hincrby(keys.broadcast(broadcast_id), "sent" if sent else "failed", 1)

    def mark_reported(self, broadcast_id: str) -> bool:
        """True for the one run that reports the broadcast."""
        return bool(self.redis.hsetnx(keys.broadcast(broadcast_id), "reported", "1"))

    def save_report(self, report: str) -> None:
        self.redis.set(keys.BROADCAST_REPORT, report)

    def last_report(self) -> str | None:
        found = self.redis.get(keys.BROADCAST_REPORT)
        return None if found is None else str(found)
