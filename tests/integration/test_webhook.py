"""The webhook against hostile and broken input, every message kind, and encrypted modes."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from bot import texts
from testing.fakes.openai_server import FakeOpenAI
from testing.simulator import WeChatSimulator, encrypt
from tests.conftest import AES_KEY, APPID, Bot


def test_url_check_returns_the_bare_echostr(bot: Bot) -> None:
    response = bot.simulator().get_url_check("echo-123")
    assert response.status_code == 200 and response.text == "echo-123"


def test_url_check_with_a_wrong_signature_is_403(bot: Bot) -> None:
    response = bot.simulator().get_url_check("x", params={"signature": "0" * 40})
    assert response.status_code == 403


@pytest.mark.parametrize("mode", ["compat", "safe"])
def test_encrypted_modes_round_trip(make_bot: Callable[..., Bot], fake_openai: FakeOpenAI, mode: str) -> None:
    bot = make_bot(wechat_aes_key=AES_KEY)
    delivery = bot.simulator(mode=mode).send_text("user-1", "secret question")
    assert delivery.text == "echo: secret question"
    assert not delivery.violations
    assert b"<Encrypt>" in delivery.attempts[-1].body


def test_previous_aes_key_still_decrypts_during_rotation(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    new_key = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
    bot = make_bot(wechat_aes_key=new_key, wechat_aes_key_previous=AES_KEY)
    # a push WeChat sealed with the old key is answered with the old key: WeChat can read it
    assert bot.simulator(mode="safe").send_text("user-1", "old key").text == "echo: old key"
    assert fake_openai.chat_requests()[0]["messages"][-1]["content"] == "old key"


def hostile_cases(sim: WeChatSimulator) -> list[tuple[bytes, dict[str, str], int]]:
    good = sim.text_xml("user-1", "hi").encode()
    return [
        (b"<xml>" + b"a" * 70_000 + b"</xml>", {}, 413),
        (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml>&e;</xml>', {}, 400),
        (b"<xml><unclosed>", {}, 400),
        (b"", {}, 400),
        (b"\x00\x01\x02binary", {}, 400),
        (good, {"encrypt_type": "aes", "msg_signature": "0" * 40}, 400),  # no AES key configured
    ]


def test_hostile_bodies_get_4xx_and_no_llm_call(bot: Bot, fake_openai: FakeOpenAI) -> None:
    sim = bot.simulator()
    for body, params, status in hostile_cases(sim):
        assert sim.post_raw(body, params=params).status_code == status, body[:40]
    assert sim.post_raw(sim.text_xml("user-1", "hi").encode(), sign=False).status_code == 403
    assert fake_openai.chat_requests() == []


def test_bad_base64_and_wrong_appid_in_safe_mode_are_400(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    bot = make_bot(wechat_aes_key=AES_KEY)
    sim = bot.simulator(mode="safe")
    wrong_signature = sim.envelope(sim.text_xml("user-1", "hi"))[0]
    response = sim.post_raw(wrong_signature, params={"encrypt_type": "aes", "msg_signature": "0" * 40})
    assert response.status_code == 403
    bad_base64 = b"<xml><ToUserName>gh</ToUserName><Encrypt>%%%not-base64%%%</Encrypt></xml>"
    assert sim.post_raw(bad_base64, params={"encrypt_type": "aes"}).status_code in (400, 403)
    other_app = encrypt(AES_KEY, "wxOTHERAPP", sim.text_xml("user-1", "hi"))
    body = f"<xml><ToUserName>gh</ToUserName><Encrypt>{other_app}</Encrypt></xml>".encode()
    params = sim.signed_params(encrypted=other_app) | {"encrypt_type": "aes"}
    response = sim.post_raw(body, params=params, sign=False)
    assert response.status_code == 400
    garbage = base64.b64encode(b"x" * 48).decode()
    body = f"<xml><ToUserName>gh</ToUserName><Encrypt>{garbage}</Encrypt></xml>".encode()
    response = sim.post_raw(
        body, params=sim.signed_params(encrypted=garbage) | {"encrypt_type": "aes"}, sign=False
    )
    assert response.status_code == 400
    assert fake_openai.chat_requests() == []
    assert APPID  # the right one is configured


def test_reply_text_is_made_xml_safe(bot: Bot, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_behavior(reply="a]]>b\x00c\x1fd")
    delivery = bot.simulator().send_text("user-1", "x")
    assert delivery.text == "a]]>bcd"


def test_subscribe_gets_the_configured_welcome(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(welcome_text="欢迎光临")
    sim = bot.simulator()
    assert sim.send_event("user-1", "subscribe").text == "欢迎光临"
    assert sim.push(sim.subscribe_xml("user-2", scene="123")).text == "欢迎光临"


def test_unsubscribe_and_view_are_acknowledged_silently(bot: Bot) -> None:
    sim = bot.simulator()
    assert sim.send_event("user-1", "unsubscribe").acknowledged
    assert sim.push(sim.view_xml("user-1", "https://example.com")).acknowledged


def test_unsupported_kinds_get_a_friendly_text(bot: Bot, fake_openai: FakeOpenAI) -> None:
    sim = bot.simulator()
    assert sim.send_image("user-1", "media-1", "http://pic").text == texts.UNSUPPORTED
    assert sim.push(sim.location_xml("user-1", 39.9, 116.4)).text == texts.UNSUPPORTED
    assert sim.push(sim.link_xml("user-1", "t", "d", "http://x")).text == texts.UNSUPPORTED
    unknown = sim.message_xml("user-1", "hologram", [("Payload", "x")])
    assert sim.push(unknown).text == texts.UNSUPPORTED
    assert fake_openai.chat_requests() == []


def test_commands_never_reach_the_llm(bot: Bot, fake_openai: FakeOpenAI) -> None:
    sim = bot.simulator()
    sim.send_text("user-1", "remember this")
    help_text = sim.send_text("user-1", "/help").text
    assert help_text is not None and "/reset" in help_text
    assert sim.send_text("user-1", "／reset").text == texts.RESET_DONE
    assert bot.runtime.history.messages("user-1") == []
    assert sim.send_text("user-1", "/nonsense").text == texts.UNKNOWN_COMMAND
    assert len(fake_openai.chat_requests()) == 1


def test_healthz_reports_redis(bot: Bot) -> None:
    client = bot.app.test_client()
    assert client.get("/healthz").status_code == 200


def test_an_attempt_at_another_process_is_still_one_llm_call(
    make_bot: Callable[..., Bot], fake_openai: FakeOpenAI
) -> None:
    """WeChat's retry may reach another process or machine: de-duplication lives in Redis."""
    first, second = make_bot(), make_bot(with_worker=False)
    fake_openai.set_behavior(first_token_delay=1.6)
    sim_a, sim_b = first.simulator(), second.simulator()
    xml = sim_a.text_xml("user-1", "shared")
    sim_a.attempts = 1
    assert sim_a.push(xml).attempts[0].status == "timeout"
    retry = sim_b.push(xml)
    assert retry.text == "echo: shared"
    assert len(fake_openai.chat_requests()) == 1


def test_redis_down_gives_a_polite_reply_not_a_500(make_bot: Callable[..., Bot], refused_port: int) -> None:
    bot = make_bot(with_worker=False, redis_url=f"redis://127.0.0.1:{refused_port}/0")
    delivery = bot.simulator().send_text("user-1", "anyone there?")
    assert delivery.text == texts.SERVICE_DOWN
    assert bot.app.test_client().get("/healthz").status_code == 503


def test_a_leaked_signature_cannot_carry_another_message(bot: Bot, fake_openai: FakeOpenAI) -> None:
    sim = bot.simulator()
    params = sim.signed_params("user-1")
    first = sim.text_xml("user-1", "/whoami").encode()
    assert sim.post_raw(first, params=params, sign=False).status_code == 200
    assert sim.post_raw(first, params=params, sign=False).status_code == 200  # the same push again: a retry
    forged = sim.text_xml("user-1", "/reset").encode()
    assert sim.post_raw(forged, params=params, sign=False).status_code == 403


def test_the_query_openid_must_be_the_sender(bot: Bot) -> None:
    sim = bot.simulator()
    body = sim.text_xml("admin-1", "/stats").encode()
    assert sim.post_raw(body, params=sim.signed_params("user-1"), sign=False).status_code == 403
