"""`make check` against loopback fakes: each failure names the setting and the fix."""

from __future__ import annotations

import contextlib
import gc
import io
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bot.config import PROJECT_ENV_FILE
from bot.llm import LLMError
from bot.ops.check import llm_hint, mask, run_checks
from bot.ops.redis_server import url_file
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from tests.conftest import AES_KEY, TOKEN


def check(config: dict[str, Any], **changes: Any) -> tuple[int, str]:
    out = io.StringIO()
    code = run_checks(out, **{**config, **changes})
    return code, out.getvalue()


def test_everything_fine_prints_what_to_paste(base_config: dict[str, Any]) -> None:
    code, text = check(base_config)
    assert code == 0, text
    assert "Token:          te******en" in text and "明文模式" in text
    assert "[  ok] WeChat API" in text and "[  ok] LLM" in text
    assert "URL:            https://<your domain>/wechat" in text


def test_the_url_to_paste_is_public_base_urls(base_config: dict[str, Any]) -> None:
    code, text = check(base_config, public_base_url="https://bot.example.com")
    assert code == 0, text
    assert "URL:            https://bot.example.com/wechat" in text


def test_secrets_to_paste_are_masked_and_their_place_named(
    base_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A terminal's output is often shared: the Token and EncodingAESKey are shown masked."""
    monkeypatch.delenv("WECHAT_TOKEN", raising=False)
    monkeypatch.setenv("WECHAT_AES_KEY", AES_KEY)
    code, text = check(base_config, wechat_aes_key=AES_KEY)
    assert code == 0, text
    assert TOKEN not in text and AES_KEY not in text
    assert f"EncodingAESKey: {AES_KEY[:2]}{'*' * 39}{AES_KEY[-2:]}" in text
    assert f"WECHAT_TOKEN in {PROJECT_ENV_FILE}" in text
    assert "the environment variable WECHAT_AES_KEY" in text


def test_first_run_without_an_llm_is_a_warning_not_a_failure(
    base_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no LLM configured `make run` answers with the local model: `make check` says so."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FASTCHAT_CONTROLLER_URL", "LLM_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    config = {k: v for k, v in base_config.items() if k not in ("openai_api_key", "openai_base_url")}
    code, text = check(config)
    assert code == 0, text
    assert "[warn] LLM: none configured" in text and "local model" in text


def test_wrong_secret_is_named(base_config: dict[str, Any]) -> None:
    code, text = check(base_config, wechat_secret="wrong")
    assert code == 1 and "40125" in text and "WECHAT_SECRET" in text


def test_wrong_appid_is_named(base_config: dict[str, Any]) -> None:
    code, text = check(base_config, wechat_appid="wxwrong")
    assert code == 1 and "40013" in text and "WECHAT_APPID" in text


def test_ip_whitelist_explains_with_the_servers_ip(
    base_config: dict[str, Any], fake_wechat: FakeWeChatAPI
) -> None:
    fake_wechat.ip_whitelisted = False
    code, text = check(base_config)
    assert code == 1 and "IP白名单" in text
    assert "127.0.0.1" in text


def test_unreachable_redis_is_named(base_config: dict[str, Any], refused_port: int) -> None:
    code, text = check(base_config, redis_url=f"redis://127.0.0.1:{refused_port}/0")
    assert code == 1 and "[FAIL] REDIS_URL" in text


def test_a_redis_that_refuses_the_database_is_named_not_passed(base_config: dict[str, Any]) -> None:
    """PING's own error (SELECT 99 of 16 databases) was read as "CONFIG disabled" and passed."""
    url = base_config["redis_url"].rsplit("/", 1)[0] + "/99"
    code, text = check(base_config, redis_url=url)
    assert code == 1, text
    assert f"[FAIL] REDIS_URL: cannot use {url}: DB index is out of range" in text
    assert "CONFIG disabled" not in text


def test_a_stale_embedded_redis_is_a_warning_naming_its_note(
    base_config: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    refused_port: int,
) -> None:
    """A `make run` killed outright leaves data/redis/url behind: the password is not printed."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    noted = url_file(tmp_path)
    noted.parent.mkdir()
    noted.write_text(f"redis://:secret-pw@127.0.0.1:{refused_port}/0\n")
    _code, text = check(base_config, redis_url="", data_dir=str(tmp_path))
    assert "[warn] embedded Redis: redis://:***@127.0.0.1:" in text
    assert f"noted in {noted}, does not answer" in text and "is `make run` running?" in text
    assert "secret-pw" not in text


def test_redis_without_persistence_is_a_warning(base_config: dict[str, Any]) -> None:
    _code, text = check(base_config)
    assert "[warn] Redis: persistence is off" in text  # the test Redis runs without AOF/RDB


def test_accepting_plaintext_in_encrypted_mode_is_a_warning(base_config: dict[str, Any]) -> None:
    """WECHAT_ACCEPT_PLAINTEXT is for the switch-over in 公众号后台 only: `make check` says it is on."""
    code, text = check(base_config, wechat_aes_key=AES_KEY, wechat_accept_plaintext=True)
    assert code == 0, text
    assert "[warn] WECHAT_ACCEPT_PLAINTEXT: on: plaintext (明文) pushes are accepted" in text
    _code, text = check(base_config, wechat_aes_key=AES_KEY)
    assert "WECHAT_ACCEPT_PLAINTEXT" not in text


def test_a_window_wider_than_the_default_is_a_warning(base_config: dict[str, Any]) -> None:
    """An .env copied from an older example still says WECHAT_TIMESTAMP_TOLERANCE=3600."""
    _code, text = check(base_config, wechat_timestamp_tolerance=3600)
    assert "[warn] WECHAT_TIMESTAMP_TOLERANCE: 3600s" in text
    _code, text = check(base_config)
    assert "WECHAT_TIMESTAMP_TOLERANCE" not in text


def test_bad_api_key_is_named(base_config: dict[str, Any], fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(api_key="the-right-key")
    code, text = check(base_config)
    assert code == 1 and "OPENAI_API_KEY" in text


def test_a_base_url_without_v1_is_asked_about(base_config: dict[str, Any], fake_openai: FakeOpenAI) -> None:
    """/models and /chat/completions both 404: the model name is not what is wrong."""
    code, text = check(base_config, openai_base_url=fake_openai.url)
    assert code == 1, text
    assert "→ /models is not found either: does OPENAI_BASE_URL end in /v1?" in text
    assert "check OPENAI_MODEL" not in text


def test_a_model_the_server_does_not_have_is_named(
    base_config: dict[str, Any], fake_openai: FakeOpenAI
) -> None:
    """/models answers, the completion is 404 (the model does not exist): the model is named."""
    fake_openai.set_behavior(fail_status=404, scope=("/v1/chat/completions",))
    code, text = check(base_config, openai_model="no-such-model")
    assert code == 1 and "→ check OPENAI_MODEL / FASTCHAT_MODEL" in text, text
    assert "end in /v1" not in text


def test_the_hint_follows_the_status_not_the_numbers_in_the_url() -> None:
    """A server at port 14010 that fails with 500: its URL holds "401", its key is not the fault."""
    url = "http://127.0.0.1:14010/v1/chat/completions"
    failed = LLMError("failed", f"OpenAI error 500 for model 'm' at {url}: boom", 500)
    assert llm_hint(failed) == failed.detail
    refused = LLMError("failed", f"OpenAI error 401 for model 'm' at {url}: no", 401)
    assert llm_hint(refused).endswith("→ check OPENAI_API_KEY")


def test_unreachable_llm_is_named(base_config: dict[str, Any], refused_port: int) -> None:
    code, text = check(base_config, openai_base_url=f"http://127.0.0.1:{refused_port}/v1", openai_timeout=2.0)
    assert code == 1 and "OPENAI_BASE_URL" in text


@pytest.mark.parametrize(("change", "named"), [({"wechat_aes_key": "x" * 10}, "WECHAT_AES_KEY")])
def test_malformed_setting_fails_first(
    base_config: dict[str, Any], change: dict[str, Any], named: str
) -> None:
    code, text = check(base_config, **change)
    assert code == 1 and named in text


def test_fastchat_without_a_worker_for_the_model_is_named(base_config: dict[str, Any]) -> None:
    from testing.fakes.fastchat import DEFAULT_MODEL, FakeController, FakeWorker

    with FakeController() as controller, FakeWorker() as worker:
        fastchat = {"llm_backend": "fastchat", "fastchat_controller_url": controller.url}
        code, text = check(base_config, **fastchat, fastchat_model=DEFAULT_MODEL)
        assert code == 1 and "FASTCHAT_CONTROLLER_URL" in text
        controller.register(worker)
        code, text = check(base_config, **fastchat, fastchat_model=DEFAULT_MODEL)
        assert code == 0, text
        code, text = check(base_config, **fastchat, fastchat_model="no-such-model")
        assert code == 1 and "no-such-model" in text


def open_sockets_to(port: int) -> list[socket.socket]:
    """Open sockets of this process connected to `port`, garbage not yet collected included."""
    found = []
    for item in gc.get_objects():
        if isinstance(item, socket.socket) and item.fileno() != -1:
            with contextlib.suppress(OSError):
                if item.getpeername()[1] == port:
                    found.append(item)
    return found


def test_check_hangs_up_on_the_llm(base_config: dict[str, Any], fake_openai: FakeOpenAI) -> None:
    """The test completion is cut after its first piece: its connection must be closed, not left to GC."""
    for _ in range(2):
        code, text = check(base_config)
        assert code == 0, text
    assert open_sockets_to(urlsplit(fake_openai.url).port or 0) == []


@pytest.mark.parametrize(
    ("secret", "shown"), [("", ""), ("abc", "***"), ("abcdef", "******"), ("abcdefgh", "ab****gh")]
)
def test_mask_keeps_two_characters_at_each_end_of_long_enough_secrets(secret: str, shown: str) -> None:
    assert mask(secret) == shown
