"""`make chat` (tools/chat.py) as a subprocess against a real bot: stdin in, what the user sees out."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from bot.ops.local_llm import LOCAL_MAX_TOKENS, MODEL_TITLE
from bot.ops.redis_server import free_port
from testing.fakes.openai_server import FakeOpenAI
from tests.conftest import AES_KEY, APPID, ATTEMPT_TIMEOUT, ROOT, TOKEN, Bot
from tools.chat import FAILURE_NOTICE


def run_chat(bot: Bot | str, lines: list[str], *extra: str, **env: str) -> str:
    """Run the tool with only the settings it needs (no .env, no LLM key) against a bot or a URL, and
    return its output."""
    url = bot if isinstance(bot, str) else bot.url
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "OPENAI_", "FASTCHAT_"))}
    clean |= {"WECHAT_TOKEN": TOKEN, "WECHAT_APPID": APPID, "WECHAT_ATTEMPT_TIMEOUT": str(ATTEMPT_TIMEOUT)}
    result = subprocess.run(
        [sys.executable, "-m", "tools.chat", "--url", url, "--env-file", os.devnull, *extra],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean | env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_chat_sends_lines_switches_user_and_quits(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    bot = make_bot()
    out = run_chat(bot, ["hello", "/user bob", "hi", "/help", "/quit", "never sent"])
    lines = out.splitlines()
    assert "alice> hello" in lines
    assert lines[lines.index("alice> hello") + 1] == "bot> echo: hello"
    assert "  (now chatting as bob)" in lines
    assert lines[lines.index("bob> hi") + 1] == "bot> echo: hi"
    help_reply = lines[lines.index("bob> /help") + 1]
    assert help_reply.startswith("bot> ") and "echo" not in help_reply  # a bot command, not the LLM
    assert "never sent" not in out
    requests = fake_openai.chat_requests()
    assert len(requests) == 2
    bob_sees = [m["content"] for m in requests[1]["messages"] if m["role"] == "user"]
    assert bob_sees == ["hi"]  # bob is another follower: alice's conversation is not his


def test_chat_encrypts_in_safe_mode(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(wechat_aes_key=AES_KEY)
    out = run_chat(bot, ["你好"], WECHAT_AES_KEY=AES_KEY)
    assert "(pushing to" in out and "safe mode" in out
    assert "bot> echo: 你好" in out.splitlines()


def test_chat_shows_customer_service_messages_in_active_mode(make_bot: Callable[..., Bot]) -> None:
    port = free_port()
    api_base = f"http://127.0.0.1:{port}"
    bot = make_bot(wechat_reply_mode="active", wechat_api_base=api_base)
    out = run_chat(
        bot,
        ["hello", "/user bob", "hi"],
        "--linger",
        "1.5",
        WECHAT_API_BASE=api_base,
        WECHAT_REPLY_MODE="active",
    )
    lines = out.splitlines()
    assert "bot[客服]> echo: hi" in lines
    # alice's answer may arrive after the switch to bob: then it is shown as addressed to her
    assert "bot[客服]> echo: hello" in lines or "bot[客服 → alice]> echo: hello" in lines
    assert not any(line.startswith("bot> ") for line in lines)  # active mode: no passive reply


def test_each_run_of_the_tool_sends_new_msg_ids(make_bot: Callable[..., Bot]) -> None:
    """The bot de-duplicates on MsgId for days: a second session must not get the first one's replies."""
    bot = make_bot()
    assert "bot> echo: first" in run_chat(bot, ["first"]).splitlines()
    assert "bot> echo: second" in run_chat(bot, ["second"]).splitlines()


def test_the_banner_names_the_first_run_model_when_no_llm_is_configured(make_bot: Callable[..., Bot]) -> None:
    """`make chat` on the first run: the user is told what answers, and how to configure a real LLM."""
    bot = make_bot()
    banner = run_chat(bot, ["/quit"], LLM_BACKEND="", LLM_MAX_TOKENS="").split("alice> /quit")[0]
    assert f"first-run model, {MODEL_TITLE} on the CPU" in banner
    assert f"answers capped at {LOCAL_MAX_TOKENS} tokens, for seeing the pipeline work" in banner
    assert "OPENAI_API_KEY" in banner and "FASTCHAT_CONTROLLER_URL" in banner
    assert "capped at 48 tokens" in run_chat(bot, ["/quit"], LLM_MAX_TOKENS="48")
    for configured in ({"OPENAI_API_KEY": "sk-x"}, {"FASTCHAT_CONTROLLER_URL": "http://gpu-box:21001"}):
        assert "first-run model" not in run_chat(bot, ["/quit"], **configured)


def test_a_bot_that_is_not_running_is_said_so(refused_port: int) -> None:
    """WeChat's failure notice and "answered on attempt 3" hid that nothing listened at the URL."""
    url = f"http://127.0.0.1:{refused_port}/wechat"
    out = run_chat(url, ["hello"])
    assert (
        f"  (cannot reach {url} (ConnectionRefusedError(111, 'Connection refused')): is `make run` running"
        in out
    )
    assert "(HOST/PORT)?)" in out and FAILURE_NOTICE not in out and "attempt" not in out


def test_a_refused_push_shows_the_bots_status_and_reason(make_bot: Callable[..., Bot]) -> None:
    """A Token that is not the bot's: its 403 and sentence, not only WeChat's notice."""
    out = run_chat(make_bot(), ["hello"], WECHAT_TOKEN="not-the-token")
    reply = next(line for line in out.splitlines() if line.startswith("bot> "))
    assert reply.startswith(f"bot> {FAILURE_NOTICE}   ← WeChat's notice: no attempt got a valid answer")
    assert "(HTTP 403: bad signature (is WECHAT_TOKEN the Token of 公众号后台?))" in reply
    assert "answered on" not in out and "WeChat tried 3 times" in out
