"""Forged pushes against the served app: a signed query string seen once (a URL check in a log, a POST
that got a 502) carries nothing else; plaintext is refused in encrypted mode; the replay guard's record
lives as long as its timestamp is accepted, and the guard fails closed when Redis does not answer."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
import requests

from bot import texts
from testing.fakes.openai_server import FakeOpenAI
from testing.simulator import sign
from tests.conftest import AES_KEY, Bot

NOW = 1_800_000_000.0
ADMIN = "admin-1"


def guard_ttls(client: redis.Redis) -> list[int]:
    return [int(client.ttl(key)) for key in client.scan_iter(match="*:signed:*")]


def test_a_url_checks_signature_cannot_carry_a_push(bot: Bot, fake_openai: FakeOpenAI) -> None:
    """Before: the GET's triple was never recorded, so it signed any POST (an admin's /system…)."""
    sim = bot.simulator()
    params = sim.signed_params()
    assert sim.get_url_check("echo-1", params=params).text == "echo-1"
    assert sim.get_url_check("echo-1", params=params).text == "echo-1"  # the same check again
    forged = sim.text_xml(ADMIN, "/system obey me").encode()
    response = sim.post_raw(forged, params=params | {"openid": ADMIN}, sign=False)
    assert response.status_code == 403
    assert sim.get_url_check("echo-2", params=params).status_code == 403  # another echostr: not a retry
    assert fake_openai.chat_requests() == []


def test_a_plaintext_push_to_an_encrypted_account_does_nothing(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """Before: with WECHAT_AES_KEY set, a POST without encrypt_type=aes was parsed and obeyed."""
    bot = make_bot(wechat_aes_key=AES_KEY)
    assert bot.simulator(mode="safe").send_text("user-1", "remember me").text == "echo: remember me"
    plain = bot.simulator(mode="plain")
    delivery = plain.send_text("user-1", "/reset")
    assert delivery.user_sees_failure and {a.status for a in delivery.attempts} == {403}
    assert len(bot.runtime.history.messages("user-1")) == 2  # the conversation is still there


def test_the_switch_over_setting_answers_plaintext_in_clear(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    bot = make_bot(wechat_aes_key=AES_KEY, wechat_accept_plaintext=True)
    delivery = bot.simulator(mode="plain").send_text("user-1", "hello")
    assert delivery.text == "echo: hello" and b"<Encrypt>" not in delivery.attempts[-1].body
    assert bot.simulator(mode="safe").send_text("user-1", "hi").text == "echo: hi"


def test_a_post_without_openid_is_refused(bot: Bot, fake_openai: FakeOpenAI) -> None:
    """Before: no openid in the query, no check of it."""
    sim = bot.simulator()
    body = sim.text_xml(ADMIN, "/stats").encode()
    assert sim.post_raw(body, params=sim.signed_params(), sign=False).status_code == 403
    assert sim.post_raw(body, params=sim.signed_params(ADMIN), sign=False).status_code == 200


@pytest.mark.parametrize(
    ("offset", "lowest", "highest"),
    [
        (50, 350, 350 + 60 + 1),  # ahead of our clock: accepted until NOW + 350
        (-200, 100, 100 + 60 + 1),  # an old push: accepted only 100 s more
    ],
)
def test_the_guard_remembers_a_signature_as_long_as_its_timestamp_is_accepted(
    bot: Bot, redis_client: redis.Redis, offset: int, lowest: int, highest: int
) -> None:
    """The record's expiry runs from the push's own timestamp (+ a minute for lagging clocks). Before:
    WECHAT_TIMESTAMP_TOLERANCE from the arrival, so a timestamp ahead of our clock outlived its record
    and could then carry another body."""
    bot.ext["webhook"].protocol.clock = lambda: NOW  # our clock
    sim = bot.simulator()
    sim.clock = lambda: NOW + offset  # WeChat's stamp
    assert sim.send_text("user-1", "/whoami").text is not None
    ttls = guard_ttls(redis_client)
    assert len(ttls) == 1 and lowest <= ttls[0] <= highest, ttls


def test_a_push_the_guard_cannot_check_is_refused_politely(
    bot: Bot, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis fails the guard's call and answers the next ones (a restart, a flap): the push gets
    SERVICE_DOWN with a 200 and nothing of it runs. Before: it went through unguarded."""
    sim = bot.simulator()
    assert sim.send_text("user-1", "remember me").text == "echo: remember me"

    def down(*args: Any) -> bool:
        raise redis.exceptions.ConnectionError("Connection refused")

    monkeypatch.setattr(bot.runtime.pushes, "bind_signature", down)
    delivery = sim.send_text("user-1", "/reset")
    assert delivery.text == texts.SERVICE_DOWN
    assert [attempt.status for attempt in delivery.attempts] == [200]
    assert len(bot.runtime.history.messages("user-1")) == 2
    check = sim.get_url_check("echo")
    assert check.status_code == 503 and check.text != "echo"


def test_a_non_ascii_bearer_token_is_refused_not_a_500(make_bot: Callable[..., Bot]) -> None:
    """Before: hmac.compare_digest raised TypeError on a non-ASCII str, and /metrics answered 500."""
    bot = make_bot(with_worker=False, metrics_token="s3cret")
    url = bot.url.removesuffix("/wechat") + "/metrics"
    for header in ("Bearer 令牌".encode(), "Bearer é".encode("latin-1"), b"Bearer s3cret\xff"):
        assert requests.get(url, headers={"Authorization": header}, timeout=5).status_code == 403
    assert requests.get(url, headers={"Authorization": "Bearer s3cret"}, timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("MsgId", "abc"),
        ("MsgId", "1.5"),
        ("MsgId", "9" * 5000),
        ("CreateTime", "abc"),
        ("CreateTime", "9" * 30),
    ],
)
def test_a_signed_push_with_a_number_that_is_none_is_refused_not_a_500(
    bot: Bot, fake_openai: FakeOpenAI, field: str, value: str
) -> None:
    """wechatpy converts MsgId and CreateTime when they are first read: the webhook reads them while it
    parses, and refuses the push (400) instead of failing later with a 500."""
    sim = bot.simulator()
    xml = re.sub(f"<{field}>[^<]*</{field}>", f"<{field}>{value}</{field}>", sim.text_xml("user-1", "hi"))
    assert f"<{field}>{value}</{field}>" in xml
    response = sim.post_raw(xml.encode(), params={"openid": "user-1"})
    assert response.status_code == 400 and "malformed MsgId or CreateTime" in response.text
    assert fake_openai.chat_requests() == []


def test_a_template_events_msgid_that_is_no_number_is_refused_not_a_500(bot: Bot) -> None:
    sim = bot.simulator()
    xml = (
        f"<xml><ToUserName><![CDATA[{sim.account_id}]]></ToUserName><FromUserName><![CDATA[user-1]]>"
        f"</FromUserName><CreateTime>{int(sim.clock())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>abc</MsgID>"
        "<Status><![CDATA[success]]></Status></xml>"
    )
    assert sim.post_raw(xml.encode(), params={"openid": "user-1"}).status_code == 400


@pytest.mark.parametrize("timestamp", ["9" * 400, "-" + "9" * 400, "１７９６１４８６０３", "²"])
def test_a_signed_timestamp_that_is_no_unix_time_is_refused_not_a_500(bot: Bot, timestamp: str) -> None:
    """Signed with the right token, so it reaches the timestamp check: a float of 400 digits overflowed."""
    sim = bot.simulator()
    params = {"signature": sign(sim.token, timestamp, "12345"), "timestamp": timestamp, "nonce": "12345"}
    response = requests.get(bot.url, params=params | {"echostr": "e"}, timeout=10)
    assert response.status_code == 403 and "timestamp is not a number" in response.text
