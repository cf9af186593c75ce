"""A misconfiguration stops startup with a message naming the setting."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.config import DEFAULT_OPENAI_BASE_URL, ConfigError, Settings, load_settings

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
        ({"timezone": "Asia/Shangai"}, "TIMEZONE"),
        ({"timezone": "../../etc/passwd"}, "TIMEZONE"),
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


def test_timezone_defaults_to_china_and_gives_a_zone() -> None:
    settings = load_settings(**BASE)
    assert settings.timezone == "Asia/Shanghai" and settings.zone == ZoneInfo("Asia/Shanghai")
    assert load_settings(**BASE, timezone="UTC").zone == ZoneInfo("UTC")


def test_unknown_timezone_names_the_close_matches() -> None:
    with pytest.raises(
        ConfigError, match=r"TIMEZONE: 'Asia/Shangai' is not a time zone \(close: \['Asia/Shanghai'"
    ):
        load_settings(**BASE, timezone="Asia/Shangai")


def test_openai_com_without_a_key_names_the_real_cause() -> None:
    """OPENAI_BASE_URL set to api.openai.com: the message must not tell the operator to set it."""
    with pytest.raises(ConfigError) as raised:
        load_settings(**{**BASE, "openai_api_key": ""}, openai_base_url=DEFAULT_OPENAI_BASE_URL)
    message = str(raised.value)
    assert f"OPENAI_API_KEY: missing; OPENAI_BASE_URL is set to {DEFAULT_OPENAI_BASE_URL}" in message
    assert "or set OPENAI_BASE_URL" not in message
    assert "leave OPENAI_API_KEY, OPENAI_BASE_URL and FASTCHAT_CONTROLLER_URL empty" in message


def test_no_llm_at_all_says_that_none_is_configured() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY: missing; no LLM is configured"):
        load_settings(**{**BASE, "openai_api_key": ""})


def test_a_env_file_in_the_working_directory_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the project's .env counts: one planted where a command happens to run must change nothing."""
    (tmp_path / ".env").write_text("WECHAT_TOKEN=planted\nOPENAI_BASE_URL=http://attacker.example/v1\n")
    monkeypatch.chdir(tmp_path)
    for name in ("WECHAT_TOKEN", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(**{**BASE, "wechat_token": "mine"})
    assert settings.wechat_token == "mine" and settings.openai_base_url == DEFAULT_OPENAI_BASE_URL
    assert Settings.model_config["env_file"] == str(Path(__file__).resolve().parents[2] / ".env")
