"""A misconfiguration stops startup with a message naming the setting."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings

BASE = {"wechat_token": "t", "redis_url": "redis://127.0.0.1:6379/0", "openai_api_key": "k"}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"wechat_token": ""}, "WECHAT_TOKEN"),
        ({"redis_url": ""}, "REDIS_URL"),
        ({"redis_url": "localhost"}, "REDIS_URL"),
        ({"wechat_aes_key": "short", "wechat_appid": "wx1"}, "WECHAT_AES_KEY"),
        ({"wechat_aes_key": "a" * 43}, "WECHAT_APPID"),
        ({"wechat_reply_mode": "active", "wechat_appid": "wx1"}, "WECHAT_SECRET"),
        ({"wechat_reply_mode": "loud"}, "WECHAT_REPLY_MODE"),
        ({"openai_api_key": ""}, "OPENAI_API_KEY"),
        ({"wechat_max_reply_bytes": 5000}, "WECHAT_MAX_REPLY_BYTES"),
        ({"port": "http"}, "PORT"),
        ({"llm_backend": "gpt"}, "LLM_BACKEND"),
    ],
)
def test_bad_setting_is_named(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(**{**BASE, **overrides})


def test_admin_openids_are_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECHAT_ADMIN_OPENIDS", " o1, o2 ,,")
    assert load_settings(**BASE).wechat_admin_openids == ["o1", "o2"]


def test_openai_compatible_server_needs_no_key() -> None:
    settings = load_settings(**{**BASE, "openai_api_key": "", "openai_base_url": "http://127.0.0.1:8001/v1"})
    assert settings.openai_base_url == "http://127.0.0.1:8001/v1"
