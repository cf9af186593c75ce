"""Fixtures of the scripted delivery layer: a Scene (testing/scene.py) on the real redis-server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from bot.ops.redis_server import RedisServer
from testing.scene import Scene, scene_settings


@pytest.fixture
def make_scene(redis_client: redis.Redis, redis_server: RedisServer) -> Iterator[Callable[..., Scene]]:
    """make_scene(processes=1, auto_jobs=True, mode="plain", **settings) -> a Scene with WeChat's real
    timing (5 s per attempt, 0.5 s margin, 3 attempts); `settings` override the bot's settings."""
    scenes: list[Scene] = []

    def make(*, processes: int = 1, auto_jobs: bool = True, mode: str = "plain", **settings: Any) -> Scene:
        made = Scene(
            scene_settings(redis_server.url, mode, **settings), processes=processes, auto_jobs=auto_jobs
        )
        scenes.append(made)
        return made

    yield make
    for made in scenes:
        made.close()


@pytest.fixture
def scene(make_scene: Callable[..., Scene]) -> Scene:
    return make_scene()
