"""The job workers' heartbeats, for /readyz: is any job worker alive?

Dramatiq's Redis broker already keeps them: every command a broker sends (a running job worker's
consumers fetch about once a second or more often, busy or idle) stores the time in a sorted set
under the broker's id (`keys.JOB_HEARTBEATS`). The web tier's enqueues write there too, so a process
that runs job workers names its broker `keys.job_worker_id(...)` (bot/answering/worker.py) and only
those ids count here; without that, a web tier that keeps enqueueing would look like a live worker.
"""

from __future__ import annotations

import uuid

import redis

from bot.store import keys


def new_job_worker_id() -> str:
    """A broker id for a process that runs job workers (`broker.broker_id = new_job_worker_id()`,
    before the worker starts): its heartbeats then count as a job worker's."""
    return keys.job_worker_id(uuid.uuid4().hex)


class WorkerStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def ping(self) -> None:
        """Raises redis.RedisError when Redis does not answer (/healthz)."""
        self.redis.ping()

    def freshest_heartbeat_age(self) -> float | None:
        """Seconds since the most recent heartbeat of any job worker, by the Redis server's clock
        (never negative); None when no job worker has a heartbeat on record.

        The heartbeat times come from the clocks of the workers' hosts (Dramatiq's choice), so a host
        clock skewed from the Redis server's shifts the age by as much: keep the clocks synchronised.
        Raises redis.RedisError when Redis does not answer.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        pipe.zrevrange(keys.JOB_HEARTBEATS, 0, -1, withscores=True)
        (seconds, micros), beats = pipe.execute()
        now_ms = seconds * 1000 + micros / 1000
        for member, beat_ms in beats:  # freshest first
            worker_id = member.decode() if isinstance(member, bytes) else member
            if worker_id.startswith(keys.JOB_WORKER_ID_PREFIX):
                return max(0.0, (now_ms - beat_ms) / 1000)
        return None

    def heartbeats(self) -> list[tuple[str, float]]:
        """Every job worker on record, freshest first: (its broker id without JOB_WORKER_ID_PREFIX,
        seconds since its last heartbeat by the Redis server's clock, never negative) — for the
        console. Dramatiq drops an id a while after its heartbeats stop, so a dead worker shows as an
        old heartbeat for a while, then not at all."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        pipe.zrevrange(keys.JOB_HEARTBEATS, 0, -1, withscores=True)
        (seconds, micros), beats = pipe.execute()
        now_ms = seconds * 1000 + micros / 1000
        found = []
        for member, beat_ms in beats:
            worker_id = member.decode() if isinstance(member, bytes) else str(member)
            if worker_id.startswith(keys.JOB_WORKER_ID_PREFIX):
                age = max(0.0, (now_ms - beat_ms) / 1000)
                found.append((worker_id.removeprefix(keys.JOB_WORKER_ID_PREFIX), age))
        return found
