"""Every chat command through the webhook, as an admin and as a stranger."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import requests

from bot import texts
from bot.store.answers import Answer
from bot.store.users import MAX_AUTH_FAILURES, AdminStore
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.patience import wait_for
from testing.simulator import WeChatSimulator
from tests.conftest import APPID, ATTEMPT_TIMEOUT, ROOT, TOKEN, Bot, start_worker

ADMIN = "admin-1"
ADMIN_COMMANDS = [
    "/stats",
    "/ban x",
    "/unban x",
    "/system hi",
    "/welcome hi",
    "/quota 3",
    "/broadcast hi",
    "/admins",
]


@pytest.fixture
def admin_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(wechat_admin_openids=[ADMIN])


def say(bot: Bot, openid: str, text: str) -> str:
    reply = bot.simulator().send_text(openid, text).text
    assert reply is not None, f"no text reply to {text!r}"
    return reply


@pytest.mark.parametrize("command", ADMIN_COMMANDS)
def test_admin_commands_look_unknown_to_strangers(admin_bot: Bot, command: str) -> None:
    assert say(admin_bot, "stranger", command) == texts.UNKNOWN_COMMAND
    assert admin_bot.runtime.admin.audit_log() == []


def test_help_lists_what_the_sender_may_use(admin_bot: Bot) -> None:
    stranger, admin = say(admin_bot, "stranger", "/help"), say(admin_bot, ADMIN, "／help")
    assert "/model" in stranger and "/image" in stranger and "/stats" not in stranger
    assert "/stats" in admin and "/broadcast" in admin
    assert "/auth" not in stranger


def test_whoami_tells_the_openid(admin_bot: Bot) -> None:
    assert "stranger" in say(admin_bot, "stranger", "/whoami")
    assert texts.WHOAMI_ADMIN in say(admin_bot, ADMIN, "/whoami")


def test_ban_stops_llm_calls_and_unban_restores(admin_bot: Bot, fake_openai: FakeOpenAI) -> None:
    assert say(admin_bot, ADMIN, "/ban user-9") == texts.BANNED_DONE.format(openid="user-9")
    assert say(admin_bot, "user-9", "hello") == texts.BANNED
    assert fake_openai.chat_requests() == []
    say(admin_bot, ADMIN, "/unban user-9")
    assert say(admin_bot, "user-9", "hello") == "echo: hello"
    assert [entry["command"] for entry in admin_bot.runtime.admin.audit_log()] == ["unban", "ban"]


def banned_while_queued(bot: Bot) -> Answer:
    """user-9's question queued (no job worker yet), then user-9 banned, then the worker started: the
    answer once its job has run."""
    asked = bot.simulator().send_text("user-9", "hello")
    assert not asked.user_sees_failure
    plan = bot.runtime.pushes.plan(f"id:{asked.msg_id}")  # the push's record, by its MsgId
    assert plan is not None and plan.kind == "ask"
    answer_id = plan.answer_id
    assert say(bot, ADMIN, "/ban user-9") == texts.BANNED_DONE.format(openid="user-9")
    bot.worker = start_worker(bot.app)
    wait_for(lambda: getattr(bot.runtime.answers.get(answer_id), "finished", False), what="the job's end")
    answer = bot.runtime.answers.get(answer_id)
    assert answer is not None
    return answer


@pytest.mark.parametrize("mode", ["passive", "active"])
def test_ban_stops_a_question_already_queued(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI, mode: str
) -> None:
    """The ban was checked only when a question arrived: one queued before the /ban still reached the LLM
    and its answer was delivered (README: banned users get "never an LLM call")."""
    bot = make_bot(with_worker=False, wechat_admin_openids=[ADMIN], wechat_reply_mode=mode)
    answer = banned_while_queued(bot)
    assert (answer.status, bot.runtime.answers.page(answer, 0), answer.page_count) == (
        "done",
        texts.BANNED,
        1,
    )
    assert fake_openai.chat_requests() == []
    assert bot.runtime.history.messages("user-9") == []
    # active mode: nothing is sent to a banned user, not even the typing indicator or the ban sentence
    assert fake_wechat.sent_texts("user-9") == []
    assert fake_wechat.requests_to("/cgi-bin/message/custom/typing") == []


def test_system_prompt_and_welcome_change_for_everyone(admin_bot: Bot, fake_openai: FakeOpenAI) -> None:
    assert say(admin_bot, ADMIN, "/system 你是海盗。") == texts.SYSTEM_SET
    assert "你是海盗。" in say(admin_bot, ADMIN, "/system")
    say(admin_bot, "user-1", "hi")
    assert fake_openai.chat_requests()[0]["messages"][0] == {"role": "system", "content": "你是海盗。"}
    say(admin_bot, ADMIN, "/welcome 欢迎来到海盗船")
    assert admin_bot.simulator().send_event("user-2", "subscribe").text == "欢迎来到海盗船"


@pytest.mark.slow
def test_quota_is_enforced_across_two_processes(
    start_web_process: Callable[..., str],
    start_worker_process: Callable[..., Any],
    fake_openai: FakeOpenAI,
) -> None:
    """Two gunicorn web processes and a job worker process share one Redis, so one daily quota."""
    first, second = (start_web_process(wechat_admin_openids=ADMIN) for _ in range(2))
    start_worker_process()
    # the worker process is up (its heartbeat): on a busy machine its start outlasts WeChat's attempts
    ready = first.removesuffix("/wechat") + "/readyz"
    wait_for(lambda: requests.get(ready, timeout=10).status_code == 200, what="the job worker")

    def ask(url: str, openid: str, text: str) -> str | None:
        return (
            WeChatSimulator(url, TOKEN, APPID, attempt_timeout=ATTEMPT_TIMEOUT).send_text(openid, text).text
        )

    assert ask(first, ADMIN, "/quota 2") == texts.QUOTA_SET.format(quota=2)
    assert ask(first, "user-1", "one") == "echo: one"
    assert ask(second, "user-1", "two") == "echo: two"
    assert ask(second, "user-1", "three") == texts.QUOTA_REACHED.format(quota=2)
    assert ask(first, "user-1", "four") == texts.QUOTA_REACHED.format(quota=2)
    assert len(fake_openai.chat_requests()) == 2
    assert ask(second, "user-2", "other user") == "echo: other user"


def test_rate_limit_per_minute(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(user_rate_per_minute=2)
    assert say(bot, "user-1", "a") == "echo: a"
    assert say(bot, "user-1", "b") == "echo: b"
    assert say(bot, "user-1", "c") == texts.RATE_LIMITED


def test_model_lists_and_switches(make_bot: Callable[..., Bot], fake_openai: FakeOpenAI) -> None:
    bot = make_bot(allowed_models=["gpt-4o"])  # and the configured gpt-4o-mini
    listing = say(bot, "user-1", "/model")
    assert "gpt-4o" in listing and "gpt-4o-mini" in listing and "whisper-1" not in listing
    assert say(bot, "user-1", "/model nonsense") == texts.MODEL_UNKNOWN.format(model="nonsense")
    assert say(bot, "user-1", "/model gpt-4o") == texts.MODEL_SWITCHED.format(model="gpt-4o")
    say(bot, "user-1", "hi")
    say(bot, "user-2", "hi")
    models = [request["model"] for request in fake_openai.chat_requests()]
    assert models == ["gpt-4o", "gpt-4o-mini"]


def test_image_is_generated_uploaded_and_sent_as_an_image(
    admin_bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    delivery = admin_bot.simulator().send_text("user-1", "/image a cat on the moon")
    assert delivery.reply is not None and delivery.reply["MsgType"] == "image"
    [upload] = fake_wechat.uploads
    assert upload.type == "image" and upload.data.startswith(b"\x89PNG")
    assert upload.media_id in str(delivery.reply)


def test_image_when_the_account_may_not_upload(
    admin_bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    fake_wechat.fail_uploads(48001)
    assert say(admin_bot, "user-1", "/image a cat") == texts.IMAGE_NO_UPLOAD
    assert say(admin_bot, "user-1", "/image") == texts.IMAGE_USAGE


def test_image_without_an_openai_api_says_so_at_once(make_bot: Callable[..., Bot]) -> None:
    """`make run`'s first-run model (FastChat, no key, OPENAI_BASE_URL left to api.openai.com): /image
    has nothing to draw with. It used to queue a job that failed on api.openai.com ("connection error"
    in the log) and told the follower to try another description."""
    bot = make_bot(
        with_worker=False,
        llm_backend="fastchat",
        fastchat_controller_url="http://127.0.0.1:9",
        openai_api_key="",
        openai_base_url="https://api.openai.com/v1",
    )
    assert say(bot, "user-1", "/image a cat") == texts.IMAGE_UNAVAILABLE
    assert say(bot, "user-1", "/image") == texts.IMAGE_USAGE
    help_text = say(bot, "user-1", "/help")
    assert "/image" not in help_text and "/minutes" in help_text  # not offered where it cannot work


def test_minutes_from_voice_and_text(
    admin_bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    from tests.integration.test_voice import tone_amr

    fake_wechat.add_media("m1", tone_amr())
    fake_openai.set_behavior(transcript="我们决定下周发布。")
    assert say(admin_bot, "user-1", "/minutes") == texts.MINUTES_STARTED
    assert admin_bot.simulator().send_voice("user-1", "m1").text == texts.MINUTES_PIECE.format(n=1)
    assert say(admin_bot, "user-1", "张三负责测试") == texts.MINUTES_PIECE.format(n=2)
    fake_openai.set_behavior(reply="要点：发布。决定：下周。待办：张三测试。")
    assert say(admin_bot, "user-1", "/minutes end").startswith("要点")
    prompt = fake_openai.chat_requests()[-1]["messages"]
    assert prompt[0]["content"] == texts.MINUTES_SYSTEM
    assert "1. 我们决定下周发布。" in prompt[1]["content"] and "2. 张三负责测试" in prompt[1]["content"]
    assert say(admin_bot, "user-1", "/minutes end") == texts.MINUTES_NOT_STARTED
    fake_openai.set_behavior(reply=None)
    assert say(admin_bot, "user-1", "normal again") == "echo: normal again"


def test_broadcast_reaches_open_windows_and_reports(
    make_bot: Callable[..., Bot], fake_wechat: FakeWeChatAPI
) -> None:
    bot = make_bot(wechat_admin_openids=[ADMIN], wechat_reply_mode="active")
    for user in ("user-1", "user-2"):
        bot.simulator().send_text(user, "/whoami")
    fake_wechat.fail(api="send", errcode=45015, times=1)
    assert "3" in say(bot, ADMIN, "/broadcast 通知：明天维护")
    wait_for(lambda: any("群发完成" in t for t in fake_wechat.sent_texts(ADMIN)))
    report = next(t for t in fake_wechat.sent_texts(ADMIN) if "群发完成" in t)
    assert report == texts.BROADCAST_REPORT.format(sent=2, failed=1)


def test_broadcast_needs_active_mode(admin_bot: Bot) -> None:
    assert say(admin_bot, ADMIN, "/broadcast hi") == texts.BROADCAST_PASSIVE


def test_stats_and_admins(admin_bot: Bot) -> None:
    say(admin_bot, "user-1", "hi")
    stats = say(admin_bot, ADMIN, "/stats")
    assert "今日用户 2" in stats and "第1次推送 1" in stats
    assert ADMIN in say(admin_bot, ADMIN, "/admins")


def test_one_time_code_makes_an_admin_once(admin_bot: Bot, base_config: dict[str, Any]) -> None:
    env = {k.upper(): str(v) for k, v in base_config.items()}
    result = subprocess.run(
        [sys.executable, "-m", "bot.ops.admin_code"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    code = result.stdout.split("/auth ")[1].strip()
    assert say(admin_bot, "owner", f"/auth {code}") == texts.AUTH_OK
    assert texts.WHOAMI_ADMIN in say(admin_bot, "owner", "/whoami")
    assert say(admin_bot, "thief", f"/auth {code}") == texts.AUTH_FAILED  # single use
    assert say(admin_bot, "owner", "/stats").startswith("今日用户")


def test_quota_takes_decimal_digits_only(admin_bot: Bot) -> None:
    assert say(admin_bot, ADMIN, "/quota ²") == texts.USAGE.format(usage=texts.USAGE_QUOTA)  # no crash
    assert say(admin_bot, ADMIN, "/quota 99999999999") == texts.USAGE.format(usage=texts.USAGE_QUOTA)
    assert say(admin_bot, ADMIN, "/quota ３") == texts.QUOTA_SET.format(quota=3)  # full-width digit
    assert admin_bot.runtime.overrides.daily_quota() == 3


def test_a_full_width_space_separates_a_command_from_its_argument(admin_bot: Bot) -> None:
    code = admin_bot.runtime.admin.new_code()
    assert say(admin_bot, "owner", f"／auth\u3000{code}") == texts.AUTH_OK
    assert say(admin_bot, ADMIN, "/ban\u3000user-9\u3000") == texts.BANNED_DONE.format(openid="user-9")


def test_brute_forcing_auth_is_stopped(admin_bot: Bot) -> None:
    code = admin_bot.runtime.admin.new_code()
    for attempt in range(MAX_AUTH_FAILURES):
        assert say(admin_bot, "mallory", f"/auth guess{attempt}") == texts.AUTH_FAILED
    assert say(admin_bot, "mallory", f"/auth {code}") == texts.AUTH_LOCKED  # even the right code
    assert not admin_bot.runtime.admin.is_admin("mallory")


def test_sensitive_words_refuse_questions_and_mask_answers(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    bot = make_bot(sensitive_words=["违禁词"])
    assert say(bot, "user-1", "告诉我违禁词") == texts.REFUSED_SENSITIVE
    fake_openai.set_behavior(reply="这里有违禁词出现")
    assert say(bot, "user-1", "hello") == "这里有***出现"


def test_moderation_endpoint_refuses_flagged_questions(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    bot = make_bot(moderation=True)
    fake_openai.set_behavior(flagged_words=("attack",))
    assert say(bot, "user-1", "plan an attack") == texts.REFUSED_SENSITIVE
    assert say(bot, "user-1", "plan a picnic") == "echo: plan a picnic"


def test_admin_store_code_is_stored_hashed(redis_client: Any) -> None:
    store = AdminStore(redis_client, [])
    code = store.new_code()
    assert not [key for key in redis_client.keys("*") if code in key]
