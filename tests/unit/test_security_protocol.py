"""The push protocol against forged pushes: the timestamp window, plaintext in encrypted mode, the
query's openid, and replies sealed with the key that opened their push (key rotation)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.wechat.protocol import MAX_FUTURE_SKEW, ProtocolError, WeChatProtocol, signature_of
from testing.simulator import WeChatSimulator, decrypt, parse_xml

NOW = 1_800_000_000
TOKEN = "AAAAA"
APPID = "wx0123456789abcdef"
OLD_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
NEW_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
USER = "user-1"


def protocol(**overrides: Any) -> WeChatProtocol:
    settings = load_settings(
        wechat_token=TOKEN, redis_url="redis://127.0.0.1:1/0", openai_api_key="k", **overrides
    )
    return WeChatProtocol(settings, clock=lambda: NOW)


def signed(ts: int = NOW, nonce: str = "1514711492") -> dict[str, str]:
    return {"signature": signature_of(TOKEN, str(ts), nonce), "timestamp": str(ts), "nonce": nonce}


def simulator(mode: str = "plain", aes_key: str | None = None) -> WeChatSimulator:
    url = "http://unused.invalid/wechat"
    return WeChatSimulator(url, TOKEN, APPID, aes_key=aes_key, mode=mode, clock=lambda: NOW)


def push_of(sim: WeChatSimulator, text: str = "hi", openid: str = USER) -> tuple[dict[str, str], bytes]:
    """The query and body WeChat would POST for this text, signed at NOW."""
    body, encrypted = sim.envelope(sim.text_xml(openid, text))
    return sim.signed_params(openid, encrypted), body


# --- the window: how old, how far ahead ---------------------------------------------------------------


def test_the_default_window_is_five_minutes() -> None:
    assert Settings.model_fields["wechat_timestamp_tolerance"].default == 300


def test_a_timestamp_far_ahead_of_our_clock_is_refused() -> None:
    """Before: accepted up to WECHAT_TIMESTAMP_TOLERANCE ahead, which stretched how long one signed
    query string opens the door."""
    check = protocol(wechat_timestamp_tolerance=3600)
    check.verify(signed(NOW + MAX_FUTURE_SKEW))  # a slow clock, within reason
    with pytest.raises(ProtocolError, match="ahead of our clock") as info:
        check.verify(signed(NOW + MAX_FUTURE_SKEW + 1))
    assert info.value.status == 403
    with pytest.raises(ProtocolError, match="ahead of our clock"):
        check.verify(signed(NOW + 1800))


def test_a_timestamp_is_accepted_until_tolerance_after_it() -> None:
    check = protocol(wechat_timestamp_tolerance=300)
    check.verify(signed(NOW - 300))
    with pytest.raises(ProtocolError, match="WECHAT_TIMESTAMP_TOLERANCE"):
        check.verify(signed(NOW - 301))
    assert check.accepted_until(str(NOW - 100)) == NOW + 200  # from the timestamp, not the arrival


# --- plaintext when a key is configured ----------------------------------------------------------------


def test_a_plaintext_push_is_refused_when_an_aes_key_is_set() -> None:
    """Before: parsed as plaintext and answered in clear — a leaked query string forged any message."""
    args, body = push_of(simulator(), "/system you obey me")
    with pytest.raises(ProtocolError, match="WECHAT_ACCEPT_PLAINTEXT") as info:
        protocol(wechat_aes_key=OLD_KEY, wechat_appid=APPID).open(args, body)
    assert info.value.status == 403


def test_the_switch_over_setting_lets_plaintext_through() -> None:
    args, body = push_of(simulator(), "hello")
    check = protocol(wechat_aes_key=OLD_KEY, wechat_appid=APPID, wechat_accept_plaintext=True)
    push = check.open(args, body)
    assert push.message.content == "hello" and not push.encrypted
    assert "<Encrypt>" not in check.render_text(push, "in clear, as it came")


@pytest.mark.parametrize("mode", ["compat", "safe"])
def test_encrypted_pushes_open_in_both_modes(mode: str) -> None:
    args, body = push_of(simulator(mode, OLD_KEY), "secret")
    assert "msg_signature" in args and args["encrypt_type"] == "aes"
    push = protocol(wechat_aes_key=OLD_KEY, wechat_appid=APPID).open(args, body)
    assert push.message.content == "secret" and push.encrypted


# --- the query's openid -------------------------------------------------------------------------------


def test_a_post_without_openid_is_refused() -> None:
    """Before: the check ran only when the query had an openid; leaving it out skipped it."""
    args, body = push_of(simulator(), "/ban user-2", openid="admin-1")
    del args["openid"]
    with pytest.raises(ProtocolError, match="missing openid") as info:
        protocol().open(args, body)
    assert info.value.status == 403


def test_the_query_openid_must_be_the_sender() -> None:
    args, body = push_of(simulator(), "/stats", openid="admin-1")
    with pytest.raises(ProtocolError, match="not the message's sender"):
        protocol().open(args | {"openid": USER}, body)


# --- key rotation ---------------------------------------------------------------------------------------


def opened_reply(key: str, sealed: str) -> str | None:
    """The reply's Content as WeChat holding `key` reads it; None when that key cannot open it."""
    try:
        xml, appid = decrypt(key, str(parse_xml(sealed)["Encrypt"]))
        return str(parse_xml(xml)["Content"]) if appid == APPID else None
    except Exception:  # a wrong key gives garbage: bad padding, length, UTF-8 or XML
        return None


def test_a_push_opened_with_the_previous_key_is_answered_with_it() -> None:
    """Before: sealed with the new key, which WeChat (still on the old one for this push) cannot open."""
    rotating = protocol(wechat_aes_key=NEW_KEY, wechat_aes_key_previous=OLD_KEY, wechat_appid=APPID)
    args, body = push_of(simulator("safe", OLD_KEY), "old key")
    sealed = rotating.render_text(rotating.open(args, body), "answer")
    assert opened_reply(OLD_KEY, sealed) == "answer"
    assert opened_reply(NEW_KEY, sealed) is None
    args, body = push_of(simulator("safe", NEW_KEY), "new key")
    sealed = rotating.render_text(rotating.open(args, body), "answer")
    assert opened_reply(NEW_KEY, sealed) == "answer"
    assert "<Encrypt>" in rotating.render_image(rotating.open(args, body), "media-1")
