"""Signature, timestamp window, XML safety and decryption errors of the push protocol."""

from __future__ import annotations

import re

import pytest
from wechatpy.crypto import WeChatCrypto

from bot.config import load_settings
from bot.wechat.protocol import ProtocolError, WeChatProtocol, signature_of, xml_safe

TS = 1714036504


def protocol(**overrides: object) -> WeChatProtocol:
    settings = load_settings(
        wechat_token="AAAAA", redis_url="redis://127.0.0.1:1/0", openai_api_key="k", **overrides
    )
    return WeChatProtocol(settings, clock=lambda: TS + 10)


def signed(token: str = "AAAAA", ts: int = TS, nonce: str = "1514711492") -> dict[str, str]:
    return {"signature": signature_of(token, str(ts), nonce), "timestamp": str(ts), "nonce": nonce}


def test_official_signature_vector() -> None:
    assert signature_of("AAAAA", "1714036504", "1514711492") == "f464b24fc39322e44b38aa78f5edd27bd1441696"


def test_url_check_answers_bare_echostr() -> None:
    assert protocol().check_echo({**signed(), "echostr": "hello123"}) == "hello123"


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"signature": "0" * 40, "timestamp": str(TS), "nonce": "1"},
        signed(token="other"),
        {**signed(), "timestamp": "abc"},
    ],
)
def test_bad_signatures_are_refused(args: dict[str, str]) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol().verify(args)
    assert info.value.status == 403


def test_timestamp_outside_the_window_is_refused() -> None:
    with pytest.raises(ProtocolError, match="WECHAT_TIMESTAMP_TOLERANCE"):
        protocol(wechat_timestamp_tolerance=60).verify(signed(ts=TS - 3600))


def test_xml_safe_escapes_cdata_end_and_strips_control_characters() -> None:
    assert xml_safe("a]]>b\x00\x08\x0bc\td\n") == "a]]]]><![CDATA[>bc\td\n"


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><ToUserName>x</ToUserName>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><xml><MsgType>text</MsgType></xml>',
        b"not xml at all",
        b"<xml><MsgType>text</MsgType></xml>",
        b"\xff\xfe\x00",
    ],
)
def test_malformed_bodies_are_4xx(body: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol().open(signed(), body)
    assert info.value.status == 400


def test_encrypted_push_without_key_is_refused() -> None:
    with pytest.raises(ProtocolError, match="WECHAT_AES_KEY"):
        protocol().open({**signed(), "encrypt_type": "aes", "msg_signature": "x"}, b"<xml/>")


_ENTITIES = (
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><xml><ToUserName>gh_1</ToUserName>'
    "<FromUserName>o1</FromUserName><CreateTime>1714036504</CreateTime><MsgType>text</MsgType>"
    "<Content>&b;&b;</Content></xml>"
)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_declarations_in_utf16_are_refused_too(encoding: str) -> None:
    """UTF-16 of ASCII is valid UTF-8 (a NUL between the characters), so `<!DOCTYPE` is not found in its
    bytes, and expat reads a document that starts `<\\0` or `\\0<` as UTF-16 whatever encoding it is told:
    a parser that expands entities would expand them (wechatpy's xmltodict refuses them: refused before)."""
    with pytest.raises(ProtocolError) as info:
        protocol().open({**signed(), "openid": "o1"}, _ENTITIES.encode(encoding))
    assert info.value.status == 400


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_declarations_in_utf16_are_refused_in_an_encrypted_push(encoding: str) -> None:
    key, appid = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx0123456789abcdef"
    sealed = WeChatCrypto("AAAAA", key, appid).encrypt_message(
        _ENTITIES.encode(encoding).decode("utf-8"), "1514711492", str(TS)
    )
    msg_signature = re.search(r"<MsgSignature><!\[CDATA\[(\w+)\]\]>", sealed)
    assert msg_signature is not None
    args = {**signed(), "openid": "o1", "encrypt_type": "aes", "msg_signature": msg_signature.group(1)}
    with pytest.raises(ProtocolError) as info:
        protocol(wechat_aes_key=key, wechat_appid=appid).open(args, sealed.encode())
    assert info.value.status == 400
