"""A misconfiguration stops startup with a message naming the setting."""

from __future__ import annotations

import re
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


def test_a_sensitive_words_file_that_cannot_be_read_stops_startup(tmp_path: Path) -> None:
    """Read at startup: a missing file used to fail every question (and the console's settings page)."""
    missing = tmp_path / "words.txt"
    with pytest.raises(
        ConfigError, match=f"SENSITIVE_WORDS_FILE: cannot read {re.escape(str(missing))}: No such file"
    ):
        load_settings(**BASE, sensitive_words_file=str(missing))
    with pytest.raises(ConfigError, match=r"SENSITIVE_WORDS_FILE: cannot read .*: Is a directory"):
        load_settings(**BASE, sensitive_words_file=str(tmp_path))
    missing.write_bytes("赌博\n".encode("gbk"))
    with pytest.raises(ConfigError, match=r"SENSITIVE_WORDS_FILE: .* is not UTF-8 text"):
        load_settings(**BASE, sensitive_words_file=str(missing))
    missing.write_text("赌博\n", encoding="utf-8")
    assert load_settings(**BASE, sensitive_words_file=str(missing)).sensitive_words_file == str(missing)


def test_log_level_is_one_logging_knows_in_any_case() -> None:
    with pytest.raises(ConfigError, match=r"LOG_LEVEL: 'verbose' is not a level \(one of DEBUG, INFO,"):
        load_settings(**BASE, log_level="verbose")
    assert load_settings(**BASE, log_level=" debug").log_level == "DEBUG"


@pytest.mark.parametrize("field", ["wechat_aes_key", "wechat_aes_key_previous"])
def test_an_aes_key_of_43_characters_must_be_base64(field: str) -> None:
    """wechatpy asserts a 32-byte key in every worker: a bare AssertionError killed them."""
    bad = "abcdefghijklmnopqrstuvwxyz0123456789!!!!!!!"
    assert len(bad) == 43
    with pytest.raises(ConfigError, match=f"{field.upper()}: must be base64"):
        load_settings(**BASE, wechat_appid="wx1", **{field: bad})
    good = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    assert getattr(load_settings(**BASE, wechat_appid="wx1", **{field: good}), field) == good


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://127.0.0.1:16399", "must specify one of the following schemes"),
        ("redis://127.0.0.1:99999/0", "Port out of range"),
        ("redis://127.0.0.1:6379/zero", "the database after the last / must be a number"),
    ],
)
def test_a_redis_url_redis_cannot_use_is_named(url: str, said: str) -> None:
    with pytest.raises(ConfigError, match=f"REDIS_URL: .*{said}"):
        load_settings(**{**BASE, "redis_url": url})


def test_the_redis_url_message_leaves_out_its_password() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(**{**BASE, "redis_url": "http://:secret-pw@127.0.0.1:6379/0"})
    assert "secret-pw" not in str(raised.value)


@pytest.mark.parametrize("url", ["rediss://cache.example:6380/1", "unix:///run/redis.sock?db=2", "redis://h"])
def test_redis_urls_of_every_scheme_are_accepted(url: str) -> None:
    assert load_settings(**{**BASE, "redis_url": url}).redis_url == url


def test_a_fastchat_controller_without_the_fastchat_backend_names_llm_backend() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(**{**BASE, "openai_api_key": ""}, fastchat_controller_url="http://127.0.0.1:21001")
    message = str(raised.value)
    assert "FASTCHAT_CONTROLLER_URL is set but LLM_BACKEND is openai: set LLM_BACKEND=fastchat" in message
    assert "OPENAI_API_KEY: missing" not in message


def test_the_fastchat_backend_without_a_controller_names_it() -> None:
    with pytest.raises(ConfigError, match="FASTCHAT_CONTROLLER_URL: required with LLM_BACKEND=fastchat"):
        load_settings(**BASE, llm_backend="fastchat")


def test_an_embedding_model_needs_a_server_to_ask() -> None:
    """With LLM_BACKEND=fastchat and no OpenAI settings, embeddings went to api.openai.com without a key."""
    fastchat = {"llm_backend": "fastchat", "fastchat_controller_url": "http://127.0.0.1:21001"}
    no_openai = {**BASE, "openai_api_key": "", **fastchat}
    with pytest.raises(
        ConfigError, match="EMBEDDING_MODEL: is called through the OpenAI API: set EMBEDDING_BASE_URL"
    ):
        load_settings(**no_openai, embedding_model="bge-m3")
    served = load_settings(
        **no_openai, embedding_model="bge-m3", embedding_base_url="http://127.0.0.1:8002/v1"
    )
    assert served.embedding_base_url == "http://127.0.0.1:8002/v1"
    assert load_settings(**BASE, **fastchat, embedding_model="text-embedding-3-small").openai_api_key == "k"
    assert load_settings(**no_openai, embedding_model="e", openai_base_url="http://127.0.0.1:8001/v1")


@pytest.mark.parametrize("name", ["WECHAT_ADMIN_OPENIDS", "SENSITIVE_WORDS"])
def test_lists_split_at_a_full_width_comma_too(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Chinese input method types ，: 赌博，色情 is two words, not one."""
    monkeypatch.setenv(name, "赌博，色情, a")
    assert getattr(load_settings(**BASE), name.lower()) == ["赌博", "色情", "a"]


def test_a_setting_that_is_not_set_says_where_settings_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run` on a fresh clone with no .env: the message names the setting and where to put it, not
    pydantic's "Field required"."""
    monkeypatch.delenv("WECHAT_TOKEN", raising=False)
    given = {key: value for key, value in BASE.items() if key != "wechat_token"}
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None, **given)
    assert "WECHAT_TOKEN: not set" in str(info.value) and "deploy/.env.example" in str(info.value)
    assert "Field required" not in str(info.value)
