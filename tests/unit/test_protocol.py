"""Signature, timestamp window, XML safety and decryption errors of the push protocol."""

from __future__ import annotations

import re

import pytest
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto

from bot.config import load_settings
from bot.wechat.protocol import ProtocolError, WeChatProtocol, flat_message, signature_of, xml_safe

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


def _push(kind: str, body: str) -> str:
    head = "<ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>"
    return f"<xml>{head}<CreateTime>1714036504</CreateTime><MsgType><![CDATA[{kind}]]></MsgType>{body}</xml>"


@pytest.mark.parametrize(
    "xml",
    [
        _push("text", "<Content><![CDATA[你好 /help]]></Content><MsgId>24000000000000001</MsgId>"),
        _push("text", "<Content><![CDATA[  spaces around \n]]></Content><MsgId>1</MsgId>"),
        _push("text", "<Content><![CDATA[]]></Content><MsgId>1</MsgId>"),
        _push("text", "<Content>a &lt; b &amp; c</Content><MsgId>1</MsgId>"),
        _push("TEXT", "<Content>upper-case type</Content>"),
        _push(
            "image",
            "<PicUrl><![CDATA[http://x/p.jpg]]></PicUrl><MediaId><![CDATA[m1]]></MediaId><MsgId>2</MsgId>",
        ),
        _push("voice", "<MediaId>m</MediaId><Format>amr</Format><Recognition><![CDATA[你好]]></Recognition>"),
        _push("location", "<Location_X>23.1</Location_X><Location_Y>113.3</Location_Y><Scale>20</Scale>"),
        _push("link", "<Title>t</Title><Description>d</Description><Url>http://x</Url><MsgId>3</MsgId>"),
        _push("shortvideo", "<MediaId>m</MediaId><ThumbMediaId>t</ThumbMediaId><MsgId>4</MsgId>"),
        _push("something_new", "<Foo>bar</Foo>"),
        "<xml>\n  <ToUserName>gh_1</ToUserName>\n  <FromUserName>o1</FromUserName>\n"
        "  <MsgType>text</MsgType>\n</xml>",
    ],
)
def test_a_chat_message_reads_as_wechatpy_reads_it(xml: str) -> None:
    """The ElementTree reading of a plain message push gives wechatpy's own message, field for field."""
    fast = flat_message(xml)
    assert fast is not None
    slow = parse_message(xml)
    assert type(fast) is type(slow)
    assert fast._data == slow._data
    assert (fast.source, fast.type, getattr(fast, "content", None)) == (
        slow.source,
        slow.type,
        getattr(slow, "content", None),
    )


@pytest.mark.parametrize(
    "xml",
    [
        _push("event", "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_7]]></EventKey>"),
        _push("event", "<Event>pic_sysphoto</Event><SendPicsInfo><Count>1</Count><PicList/></SendPicsInfo>"),
        _push("device_text", "<DeviceType>t</DeviceType>"),
        _push("text", "<Content>a</Content><Content>b</Content>"),
        _push("text", '<Content lang="zh">a</Content>'),
        _push("text", "<Content><b>bold</b></Content>"),
        _push("text", "<Content>a</Content>stray text"),
        '<xml id="1"><MsgType>text</MsgType></xml>',
        "<other><MsgType>text</MsgType></other>",
        "<xml><ToUserName>gh_1</ToUserName></xml>",
        "<xml><MsgType>text</MsgType>",
    ],
)
def test_anything_but_a_plain_message_is_left_to_wechatpy(xml: str) -> None:
    assert flat_message(xml) is None


@pytest.mark.parametrize(
    "xml",
    [
        _push("event", "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_7]]></EventKey>"),
        _push("text", "<Content>a</Content><Content>b</Content>"),
        _push("text", "<Content><b>bold</b></Content>"),
    ],
)
def test_a_push_left_to_wechatpy_still_opens(xml: str) -> None:
    """What the fast reading leaves is read by wechatpy's `parse_message`, as before it."""
    opened = protocol()._parse(xml.encode())
    assert type(opened) is type(parse_message(xml))
    assert parse_message(xml)._data.items() <= opened._data.items()  # plus the defaults it read (MsgId)


@pytest.mark.parametrize(
    "xml",
    [
        _push("text", "<Content>a</Content>").replace("<xml>", '<xml xmlns:a="urn:x">'),
        _push("text", '<Content xmlns:a="urn:x">a</Content>'),
        _push("text", '<Content xmlns="urn:x">a</Content>'),
        _push("text", '<a:Content xmlns:a="urn:x">a</a:Content>'),
        _push("text", "<xml:Content>a</xml:Content>"),
    ],
)
def test_namespaces_are_left_to_wechatpy(xml: str) -> None:
    """ElementTree hides namespace declarations (no attribute) and renames prefixed tags ({uri}tag), where
    xmltodict keeps `@xmlns…` and `prefix:tag`: such a push is read by `parse_message`, as before."""
    assert flat_message(xml) is None
    opened = protocol()._parse(xml.encode())
    assert parse_message(xml)._data.items() <= opened._data.items()


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
    ElementTree would expand its entities (xmltodict refuses entity declarations)."""
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
