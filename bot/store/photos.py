"""The last photo each user sent (VISION_MODEL): what their questions of the next minutes are about.

Only a reference is kept — WeChat's media id and the PicUrl that came with it — for PHOTO_TTL; the
image itself is fetched from WeChat when a question needs it and never stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.client import Pipeline

from bot.store import keys


@dataclass(frozen=True)
class Photo:
    media_id: str
    pic_url: str
    at: float


class PhotoStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def remember(self, openid: str, media_id: str, pic_url: str, at: float) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(keys.user_photo(openid), mapping={"media_id": media_id, "pic_url": pic_url, "at": at})
        pipe.expire(keys.user_photo(openid), keys.PHOTO_TTL)
        pipe.set(keys.photo_url(media_id), pic_url, ex=keys.PHOTO_TTL)
        pipe.execute()

    def recent(self, openid: str) -> Photo | None:
        """The photo the user sent within PHOTO_TTL, if any."""
        data = self.redis.hgetall(keys.user_photo(openid))
        if not data.get("media_id"):
            return None
        return Photo(str(data["media_id"]), str(data.get("pic_url", "")), float(data.get("at", 0)))

    def pic_url(self, media_id: str) -> str:
        return str(self.redis.get(keys.photo_url(media_id)) or "")

    def forget_in(self, pipe: Pipeline, openid: str) -> None:
        """Forget the user's last photo, queued in the caller's pipeline (a reset: one round trip with
        the history's)."""
        pipe.delete(keys.user_photo(openid))
