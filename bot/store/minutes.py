"""Meeting minutes (/minutes) being recorded: whether a user is recording, the pieces in order, and
how many voice pieces are still being transcribed. One owner for the `minutes*` keys."""

from __future__ import annotations

import redis

from bot.store import keys


class MinutesStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def start(self, openid: str) -> None:
        """A new meeting: forget any earlier pieces."""
        pipe = self.redis.pipeline()
        pipe.delete(keys.minutes(openid), keys.minutes_pending(openid))
        pipe.set(keys.minutes_on(openid), "1", ex=keys.MINUTES_TTL)
        pipe.execute()

    def recording(self, openid: str) -> bool:
        return bool(self.redis.exists(keys.minutes_on(openid)))

    def stop(self, openid: str) -> bool:
        """End the recording; False when none was on."""
        return bool(self.redis.delete(keys.minutes_on(openid)))

    def resume(self, openid: str) -> bool:
        """Recording on again after the minutes could not be written (so /minutes end can retry)."""
        if not self.redis.exists(keys.minutes(openid)):
            return False
        self.redis.set(keys.minutes_on(openid), "1", ex=keys.MINUTES_TTL)
        return True

    def add_text(self, openid: str, text: str) -> int:
        """Append a piece; its number (1-based)."""
        pipe = self.redis.pipeline()
        pipe.rpush(keys.minutes(openid), text)
        pipe.expire(keys.minutes(openid), keys.MINUTES_TTL)
        return int(pipe.execute()[0])

    def add_pending_voice(self, openid: str, placeholder: str) -> int:
        """Keep the place of a voice piece that is being transcribed; its number (1-based)."""
        pipe = self.redis.pipeline()
        pipe.incr(keys.minutes_pending(openid))
        pipe.expire(keys.minutes_pending(openid), keys.MINUTES_TTL)
        pipe.rpush(keys.minutes(openid), placeholder)
        pipe.expire(keys.minutes(openid), keys.MINUTES_TTL)
        return int(pipe.execute()[2])

    def fill_voice(self, openid: str, index: int, text: str) -> None:
        """The transcript of the voice piece at `index` (0-based) takes its place."""
        pipe = self.redis.pipeline()
        pipe.lset(keys.minutes(openid), index, text)
        pipe.decr(keys.minutes_pending(openid))
        pipe.execute()

    def pending(self, openid: str) -> int:
        return int(self.redis.get(keys.minutes_pending(openid)) or 0)

    def pieces(self, openid: str) -> list[str]:
        return [str(piece) for piece in self.redis.lrange(keys.minutes(openid), 0, -1)]

    def clear(self, openid: str) -> None:
        """The minutes are written: the recording is no longer needed."""
        self.redis.delete(keys.minutes(openid), keys.minutes_pending(openid))
