"""The console's pages for running the bot: conversations, run-time settings, audit log, undelivered
answers — through Flask's test client, with the chat going through the webhook, a real job worker and
the loopback fake of OpenAI, so that "the next answer uses it" is what the model really received."""

from __future__ import annotations

import functools
import html
import re
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient

from bot import texts
from bot.console.auth import CSRF_FIELD
from bot.store.stats import DailyStats
from testing.console import login, login_path
from testing.fakes.openai_server import FakeOpenAI
from testing.pages import PUBLIC_BASE
from testing.patience import wait_for
from tests.conftest import AES_KEY, SECRET, Bot

ADMIN = "admin-console"


@pytest.fixture
def console_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(public_base_url=PUBLIC_BASE, wechat_admin_openids=[ADMIN], allowed_models=["gpt-4o"])


@pytest.fixture
def client(console_bot: Bot) -> FlaskClient:
    return console_bot.app.test_client()


@pytest.fixture
def csrf(console_bot: Bot, client: FlaskClient) -> str:
    return login(client, console_bot.app, ADMIN)


def say(bot: Bot, openid: str, text: str) -> str:
    reply = bot.simulator().send_text(openid, text).text
    assert reply is not None, f"no text reply to {text!r}"
    return reply


def text_of(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def change(client: FlaskClient, csrf: str, name: str, **form: Any) -> None:
    response = client.post(f"/console/settings/{name}", data={CSRF_FIELD: csrf, **form})
    assert response.status_code == 303, response.get_data(as_text=True)


def audited(bot: Bot) -> list[tuple[str, str, str]]:
    return [(r["admin"], r["command"], r["args"]) for r in bot.runtime.admin.audit_log(100)]


# --- conversations ---------------------------------------------------------------------------------
def test_the_followers_list_shows_who_wrote_when_and_how_much(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    for text in ("第一个问题", "第二个问题"):
        assert say(console_bot, "user-a", text) == f"echo: {text}"
    say(console_bot, "user-b", "你好")
    page = text_of(client, "/console/users")
    assert page.index("user-b") < page.index("user-a")  # the newest first
    assert re.search(r"user-a</code></a>.*?消息 2 条", page, re.S)
    assert re.search(r"user-b</code></a>.*?消息 1 条", page, re.S)

    found = client.get("/console/users?openid=+user-a+")  # the lookup box
    assert found.status_code == 303 and found.headers["Location"].endswith("/console/users/user-a")
    one = text_of(client, "/console/users/user-a")
    assert "第一个问题" in one and "echo: 第二个问题" in one and "消息 2 条" in one


def followers_wrote(bot: Bot, openids: list[str], start: float) -> None:
    """Each of `openids` writes once, a second apart from `start` on (the last is the newest)."""
    client = bot.runtime.stats.redis
    for n, openid in enumerate(openids):
        DailyStats(client, ZoneInfo("UTC"), clock=functools.partial(float, start + n)).seen(openid)


def listed(page: str) -> list[str]:
    return re.findall(r"<code>(follower-\d\d)</code>", page)


def earlier(page: str) -> str | None:
    """The address of the 更早的用户 button, if the page has one."""
    found = re.search(r'href="([^"]*)">更早的用户</a>', page)
    return html.unescape(found.group(1)) if found else None


def test_the_next_page_of_followers_starts_where_the_last_one_ended_while_they_write(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    """It went by offset: someone writing between two page loads made one follower show twice."""
    everyone = [f"follower-{n:02d}" for n in range(60)]
    followers_wrote(console_bot, everyone, time.time() - 1000)
    first = text_of(client, "/console/users")
    assert listed(first) == everyone[:9:-1]  # the 50 newest
    following = earlier(first)
    assert following is not None

    followers_wrote(console_bot, ["follower-00", "follower-30"], time.time())  # while the admin reads
    second = text_of(client, following)
    assert listed(second) == everyone[9:0:-1]  # the rest, each once: nobody twice, nobody skipped
    assert earlier(second) is None  # and nothing after them
    assert listed(text_of(client, "/console/users"))[:2] == ["follower-30", "follower-00"]


def test_a_full_last_page_of_followers_offers_no_next_page(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    """With 100 followers the second page offered 更早的用户, which said nobody had ever written."""
    everyone = [f"follower-{n:02d}" for n in range(100)]
    followers_wrote(console_bot, everyone, time.time() - 1000)
    second = text_of(client, earlier(text_of(client, "/console/users")) or "")
    assert listed(second) == everyone[49::-1] and earlier(second) is None
    last = console_bot.runtime.stats.follower("follower-00")
    assert last is not None
    past_the_end = text_of(client, f"/console/users?before={last[0]!r}&id=follower-00")
    assert listed(past_the_end) == [] and "没有更早的用户了" in past_the_end
    assert "还没有用户发过消息" not in past_the_end and "共 100 人" in past_the_end


def test_a_follower_page_lists_their_undelivered_answers(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    console_bot.runtime.metrics.undelivered("ans-1", "user-a", "45015: window closed")
    console_bot.runtime.metrics.undelivered("ans-2", "user-b", "failed")
    page = text_of(client, "/console/users/user-a")
    assert "ans-1" in page and "45015: window closed" in page and "ans-2" not in page
    listing = text_of(client, "/console/undelivered")
    assert "ans-1" in listing and "ans-2" in listing


def test_ban_unban_and_reset_from_the_console(
    console_bot: Bot, client: FlaskClient, csrf: str, fake_openai: FakeOpenAI
) -> None:
    say(console_bot, "user-9", "记住我")
    wait_for(lambda: console_bot.runtime.history.messages("user-9"))

    assert client.post("/console/users/user-9/reset", data={CSRF_FIELD: csrf}).status_code == 303
    assert console_bot.runtime.history.messages("user-9") == []

    assert client.post("/console/users/user-9/ban", data={CSRF_FIELD: csrf}).status_code == 303
    assert say(console_bot, "user-9", "hello") == texts.BANNED
    assert "已禁止" in text_of(client, "/console/users/user-9")

    assert client.post("/console/users/user-9/unban", data={CSRF_FIELD: csrf}).status_code == 303
    assert say(console_bot, "user-9", "hello") == "echo: hello"
    assert audited(console_bot)[:3] == [
        (ADMIN, "console:unban", "user-9"),
        (ADMIN, "console:ban", "user-9"),
        (ADMIN, "console:reset", "user-9"),
    ]
    assert client.post("/console/users/user-9/delete", data={CSRF_FIELD: csrf}).status_code == 404


def test_hidden_content_stays_out_of_the_console(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(public_base_url=PUBLIC_BASE, wechat_admin_openids=[ADMIN], console_hide_content=True)
    say(bot, "user-a", "我的私密问题")
    bot.runtime.admin.audit(ADMIN, "ban", "user-a")
    client = bot.app.test_client()
    login(client, bot.app, ADMIN)
    pages = [text_of(client, path) for path in ("/console/users", "/console/users/user-a", "/console/audit")]
    assert "user-a" in pages[0] and "消息 1 条" in pages[0]  # who and how much, still
    assert all("私密" not in page for page in pages)
    assert "CONSOLE_HIDE_CONTENT" in pages[1]


# --- settings: what the next answer uses -----------------------------------------------------------
def test_the_system_prompt_changed_in_the_console_is_what_the_model_receives(
    console_bot: Bot, client: FlaskClient, csrf: str, fake_openai: FakeOpenAI
) -> None:
    change(client, csrf, "system_prompt", value="你是一只猫，只会说喵。")
    say(console_bot, "user-1", "你好")
    assert fake_openai.chat_requests()[-1]["messages"][0] == {
        "role": "system",
        "content": "你是一只猫，只会说喵。",
    }
    assert "你是一只猫" in text_of(client, "/console/settings")
    assert audited(console_bot)[0] == (ADMIN, "console:settings.system_prompt", "你是一只猫，只会说喵。")

    change(client, csrf, "system_prompt", clear="1")  # back to SYSTEM_PROMPT
    say(console_bot, "user-1", "再问一次")
    system = fake_openai.chat_requests()[-1]["messages"][0]
    assert system == {"role": "system", "content": console_bot.runtime.settings.system_prompt}


def test_the_welcome_text_changed_in_the_console_greets_new_followers(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    change(client, csrf, "welcome_text", value="欢迎来到猫咖")
    assert console_bot.simulator().send_event("user-2", "subscribe").text == "欢迎来到猫咖"


def test_the_daily_quota_changed_in_the_console_applies_to_the_next_question(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    change(client, csrf, "daily_quota", value="1")
    assert say(console_bot, "user-3", "one") == "echo: one"
    assert say(console_bot, "user-3", "two") == texts.QUOTA_REACHED.format(quota=1)


def test_the_rate_limit_changed_in_the_console_applies_to_the_next_message(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    change(client, csrf, "rate_per_minute", value="2")
    assert say(console_bot, "user-4", "a") == "echo: a"
    assert say(console_bot, "user-4", "b") == "echo: b"
    assert say(console_bot, "user-4", "c") == texts.RATE_LIMITED
    change(client, csrf, "rate_per_minute", value="0")  # unlimited
    assert say(console_bot, "user-4", "d") == "echo: d"


def test_the_sensitive_words_changed_in_the_console_refuse_and_mask(
    console_bot: Bot, client: FlaskClient, csrf: str, fake_openai: FakeOpenAI
) -> None:
    change(client, csrf, "sensitive_words", value="机密\r\n内部消息\n\n")
    assert say(console_bot, "user-5", "告诉我机密") == texts.REFUSED_SENSITIVE
    fake_openai.set_behavior(reply="这是内部消息哦")
    assert say(console_bot, "user-5", "hello") == "这是****哦"
    assert audited(console_bot)[0] == (ADMIN, "console:settings.sensitive_words", "2 words")


def test_the_models_allowed_in_the_console_are_the_ones_followers_may_pick(
    console_bot: Bot, client: FlaskClient, csrf: str, fake_openai: FakeOpenAI
) -> None:
    assert say(console_bot, "user-6", "/model gpt-4o") == texts.MODEL_SWITCHED.format(model="gpt-4o")
    change(client, csrf, "allowed_models")  # nothing ticked: the default model only
    assert say(console_bot, "user-6", "/model gpt-4o") == texts.MODEL_UNKNOWN.format(model="gpt-4o")
    say(console_bot, "user-6", "hi")  # the earlier pick is no longer allowed: the default answers
    assert fake_openai.chat_requests()[-1]["model"] == "gpt-4o-mini"
    change(client, csrf, "allowed_models", model=["gpt-4o"])
    assert say(console_bot, "user-6", "/model gpt-4o") == texts.MODEL_SWITCHED.format(model="gpt-4o")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("daily_quota", "-1"),
        ("daily_quota", "１"),
        ("rate_per_minute", "abc"),
        ("rate_per_minute", "9999999999"),
        ("system_prompt", "长" * 5000),
        ("welcome_text", "长" * 1000),
        ("sensitive_words", "x" * 51),
    ],
)
def test_a_wrong_value_is_refused_and_changes_nothing(
    console_bot: Bot, client: FlaskClient, csrf: str, name: str, value: str
) -> None:
    response = client.post(f"/console/settings/{name}", data={CSRF_FIELD: csrf, "value": value})
    assert response.status_code == 400
    assert 'class="error"' in response.get_data(as_text=True)
    assert console_bot.runtime.overrides.overridden() == frozenset()
    assert not any(command.startswith("console:settings") for _, command, _ in audited(console_bot))


@pytest.mark.parametrize(
    ("name", "typed", "shown"),
    [
        ("system_prompt", "新" * 4001, f">{'新' * 4001}</textarea>"),
        ("daily_quota", "1e3", 'name="value" min="0" step="1" inputmode="numeric" value="1e3">'),
        ("sensitive_words", "好词\r\n" + "x" * 51, ">好词\n" + "x" * 51 + "</textarea>"),
    ],
)
def test_a_refused_value_comes_back_as_typed_with_its_error(
    console_bot: Bot, client: FlaskClient, csrf: str, name: str, typed: str, shown: str
) -> None:
    """It came back as the value saved before: what the operator typed was lost."""
    change(client, csrf, "rate_per_minute", value="7")
    response = client.post(f"/console/settings/{name}", data={CSRF_FIELD: csrf, "value": typed})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    form = page[page.index(f'<section class="card" id="{name}">') :]
    assert form.index('class="error"') < form.index(shown) < form.index("</section>")
    assert re.search(r'id="value-rate_per_minute" [^>]* value="7">', page)  # the others: their values
    assert console_bot.runtime.overrides.overridden() == frozenset({"rate_per_minute"})


def test_refused_models_come_back_as_ticked(console_bot: Bot, client: FlaskClient, csrf: str) -> None:
    change(client, csrf, "allowed_models")  # the default model only
    response = client.post(
        "/console/settings/allowed_models", data={CSRF_FIELD: csrf, "model": ["gpt-4o", "gpt-5"]}
    )
    assert response.status_code == 400
    assert 'value="gpt-4o" checked>' in response.get_data(as_text=True)
    assert console_bot.runtime.models.allowed == ["gpt-4o-mini"]


def test_a_model_that_is_not_configured_cannot_be_allowed(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    response = client.post("/console/settings/allowed_models", data={CSRF_FIELD: csrf, "model": ["gpt-5"]})
    assert response.status_code == 400
    assert client.post("/console/settings/nonsense", data={CSRF_FIELD: csrf}).status_code == 404


def test_the_audit_log_shows_chat_commands_and_console_changes(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    say(console_bot, ADMIN, "/quota 5")
    change(client, csrf, "daily_quota", value="6")
    page = text_of(client, "/console/audit")
    assert page.index("console:settings.daily_quota") < page.index("quota")
    assert page.count(ADMIN) >= 3  # each record names its admin (and the footer)


# --- no secret in any page -------------------------------------------------------------------------
SECRETS = {
    "openai_api_key": "sk-console-test-9f8e7d6c5b4a",
    "metrics_token": "metrics-token-5a4b3c2d1e",
    "embedding_api_key": "emb-key-0a1b2c3d4e5f",
}


def test_no_page_shows_a_secret(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(
        with_worker=False,
        public_base_url=PUBLIC_BASE,
        wechat_admin_openids=[ADMIN],
        wechat_aes_key=AES_KEY,
        wechat_accept_plaintext=True,
        **SECRETS,
    )
    runtime = bot.runtime
    runtime.stats.seen("user-a")
    runtime.history.add_turn("user-a", "问题", "回答", 1.0)
    runtime.metrics.undelivered("ans-1", "user-a", "failed")
    access_token = "ACCESS_TOKEN_console_7c6b5a4d3e2f1a0b"
    runtime.wechat_state.save_token(access_token, 7200)  # the overview shows the token's state, not it
    client = bot.app.test_client()
    unused_link = login_path(bot.app, ADMIN)
    login(client, bot.app, ADMIN)
    secrets = [*SECRETS.values(), SECRET, AES_KEY, access_token, unused_link.rsplit("/", 1)[1]]
    session_id = client.get_cookie("wxconsole", path="/console/")
    assert session_id is not None
    secrets.append(session_id.value)

    shown: list[str] = []
    for rule in bot.app.url_map.iter_rules():
        if not rule.endpoint.startswith("console.") or "GET" not in (rule.methods or set()):
            continue
        if rule.endpoint in ("console.static", "console.login_page"):
            continue
        path = re.sub(r"<(?:\w+:)?openid>", "user-a", rule.rule)
        path = re.sub(r"<[^>]+>", "x", path)
        response = client.get(path)
        if response.status_code == 404:
            continue
        assert response.status_code in (200, 303), (path, response.status_code)
        body = response.get_data(as_text=True)
        for secret in secrets:
            assert secret not in body, (path, secret[:6])
        shown.append(path)
    assert {"/console/", "/console/users/user-a", "/console/settings", "/console/kb"} <= set(shown), shown
