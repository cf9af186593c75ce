"""What the Redis server says about itself (INFO), for the console's overview: memory, and whether
what the bot keeps would survive a restart (persistence). Read only; the raw client stays here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis


@dataclass(frozen=True)
class RedisState:
    """The figures of INFO server, memory and persistence that an operator acts on."""

    version: str
    uptime_seconds: int
    used_memory: int
    peak_memory: int
    #: 0: no limit (maxmemory unset)
    max_memory: int
    eviction_policy: str
    rdb_enabled: bool
    #: Unix time of the last successful RDB save (0: never)
    rdb_last_save: int
    rdb_changes_since_save: int
    rdb_last_status: str
    aof_enabled: bool
    aof_last_status: str


class ServerInfo:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def state(self) -> RedisState:
        """One round trip (INFO of three sections in a pipeline). Raises redis.RedisError when Redis
        does not answer."""
        pipe = self.redis.pipeline(transaction=False)
        for section in ("server", "memory", "persistence"):
            pipe.info(section)
        server, memory, persistence = pipe.execute()
        return _state(server, memory, persistence, self._save_rules())

    def _save_rules(self) -> str:
        """CONFIG GET save ("" when RDB snapshots are off; a managed Redis may refuse CONFIG: then
        RDB is taken as on, as INFO's last save says what happened)."""
        try:
            found = self.redis.config_get("save")
        except redis.exceptions.ResponseError:
            return "unknown"
        return str(found.get("save", ""))


def _state(
    server: dict[str, Any], memory: dict[str, Any], persistence: dict[str, Any], save: str
) -> RedisState:
    return RedisState(
        version=str(server.get("redis_version", "")),
        uptime_seconds=int(server.get("uptime_in_seconds", 0)),
        used_memory=int(memory.get("used_memory", 0)),
        peak_memory=int(memory.get("used_memory_peak", 0)),
        max_memory=int(memory.get("maxmemory", 0)),
        eviction_policy=str(memory.get("maxmemory_policy", "")),
        rdb_enabled=bool(save.strip()),
        rdb_last_save=int(persistence.get("rdb_last_save_time", 0)),
        rdb_changes_since_save=int(persistence.get("rdb_changes_since_last_save", 0)),
        rdb_last_status=str(persistence.get("rdb_last_bgsave_status", "")),
        aof_enabled=bool(int(persistence.get("aof_enabled", 0))),
        aof_last_status=str(persistence.get("aof_last_write_status", "")),
    )
