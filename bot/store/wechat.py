"""WeChat's state shared by every process: the access_token (and the lock under which one process
fetches it) and whether the account may use the customer-service API."""

from __future__ import annotations

import redis
from redis.lock import Lock

from bot.store import keys


class WeChatState:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def token(self) -> str | None:
        cached = self.redis.get(keys.ACCESS_TOKEN)
        return None if cached is None else str(cached)

    def token_expires_in(self) -> float | None:
        """Seconds until the cached access_token is dropped (TOKEN_EXPIRY_MARGIN before WeChat's expiry);
        None when there is none (the next API call fetches one). The token itself stays here."""
        left = int(self.redis.pttl(keys.ACCESS_TOKEN))
        return None if left < 0 else left / 1000

    def save_token(self, token: str, expires_in: int) -> None:
        """Keep a fetched token until a margin before WeChat says it expires."""
        ttl = max(60, expires_in - keys.TOKEN_EXPIRY_MARGIN)
        self.redis.set(keys.ACCESS_TOKEN, token, ex=ttl)

    def token_lock(self, wait: float) -> Lock:
        return self.redis.lock(keys.ACCESS_TOKEN_LOCK, timeout=keys.TOKEN_LOCK_TTL, blocking_timeout=wait)

    def cs_unauthorized(self) -> bool:
        """WeChat answered 48001 (no customer-service permission) within the last CS_UNAUTHORIZED_TTL."""
        return bool(self.redis.exists(keys.CS_UNAUTHORIZED))

    def mark_cs_unauthorized(self) -> None:
        self.redis.set(keys.CS_UNAUTHORIZED, "1", ex=keys.CS_UNAUTHORIZED_TTL)
