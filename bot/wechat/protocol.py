"""The WeChat push protocol in one place: signatures, AES (compatible/safe mode), XML in and out.

Nothing here knows about LLMs, Redis or Flask; everything raises `ProtocolError` with the HTTP
status that the webhook should answer (never 5xx: WeChat shows its "service failure" page then).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import BaseMessage
from wechatpy.replies import ImageReply, TextReply

from bot.config import Settings
from bot.replies import truncate_utf8

log = logging.getLogger(__name__)

_FORBIDDEN_XML = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
#: how far ahead of our clock a push's timestamp may be. WeChat stamps a push when it sends it, so a
#: timestamp from the future only means that our clock is behind WeChat's: an NTP-synchronised clock
#: is off by well under a second, a minute leaves room for a drifting one. More would stretch how long
#: one signed query string is accepted (timestamp + WECHAT_TIMESTAMP_TOLERANCE) beyond the window.
MAX_FUTURE_SKEW = 60
#: a timestamp of more digits than this is no Unix time (ten digits until the year 2286)
MAX_TIMESTAMP_DIGITS = 12


class ProtocolError(Exception):
    """A request WeChat would never send; `status` is the 4xx to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Push:
    """A verified, decrypted inbound message and what its reply needs."""

    message: BaseMessage
    encrypted: bool
    nonce: str
    #: the key that opened the push (during a key rotation, maybe WECHAT_AES_KEY_PREVIOUS): its reply
    #: is sealed with the same key, the one WeChat can open (None: plaintext, or not known)
    crypto: WeChatCrypto | None = None


def signature_of(*parts: str) -> str:
    """WeChat's signature: sha1 of the sorted parts joined, lower-case hex."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.lower().encode("utf-8"))


def xml_safe(text: str) -> str:
    """Text that survives wechatpy's unescaped CDATA: no control characters, no `]]>`."""
    return _CONTROL_CHARS.sub("", text).replace("]]>", "]]]]><![CDATA[>")


class WeChatProtocol:
    """Checks and opens pushes for one account, and renders (and encrypts) replies."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.token = settings.wechat_token
        self.appid = settings.wechat_appid
        self.tolerance = settings.wechat_timestamp_tolerance
        self.accept_plaintext = settings.wechat_accept_plaintext
        self.max_reply_bytes = settings.wechat_max_reply_bytes
        self.clock = clock
        keys = [settings.wechat_aes_key, settings.wechat_aes_key_previous]
        self.cryptos = [WeChatCrypto(self.token, key, self.appid) for key in keys if key]

    def verify(self, args: dict[str, str]) -> None:
        """Check `signature` (and the timestamp window) on any request, GET or POST."""
        timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
        given = args.get("signature", "")
        if not (timestamp and nonce and given):
            raise ProtocolError(403, "missing signature, timestamp or nonce")
        if not signature_matches(signature_of(self.token, timestamp, nonce), given):
            raise ProtocolError(403, "bad signature (is WECHAT_TOKEN the Token of 公众号后台?)")
        self._check_timestamp(timestamp)

    def _check_timestamp(self, timestamp: str) -> None:
        """Accepted from MAX_FUTURE_SKEW before the timestamp to WECHAT_TIMESTAMP_TOLERANCE after it."""
        # ASCII digits of a sane length: a signed timestamp of hundreds of digits passed int() and then
        # overflowed the float of its age (a 500)
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > MAX_TIMESTAMP_DIGITS:
            raise ProtocolError(403, "timestamp is not a number")
        age = self.clock() - int(timestamp)
        if age > self.tolerance:
            raise ProtocolError(
                403,
                f"timestamp {timestamp} is {age:.0f}s old by our clock, more than "
                f"WECHAT_TIMESTAMP_TOLERANCE={self.tolerance}s (replay, or a wrong server clock)",
            )
        if -age > MAX_FUTURE_SKEW:
            raise ProtocolError(
                403,
                f"timestamp {timestamp} is {-age:.0f}s ahead of our clock, more than {MAX_FUTURE_SKEW}s "
                "(forged, or this server's clock is behind: synchronise it with NTP)",
            )

    def accepted_until(self, timestamp: str) -> float:
        """The last instant (our clock, epoch seconds) at which a request stamped `timestamp` is
        accepted: the replay guard must remember its signature at least until then."""
        return int(timestamp) + self.tolerance

    def open(self, args: dict[str, str], body: bytes) -> Push:
        """Verify, decrypt when `encrypt_type=aes`, and parse a POSTed push.

        With an AES key, a plaintext push is refused (unless WECHAT_ACCEPT_PLAINTEXT): in 兼容模式 and
        安全模式 WeChat encrypts every push and signs its ciphertext (msg_signature), so only a forgery
        made with a leaked query string comes in plaintext. The query's `openid`, which WeChat puts on
        every POST, must be the sender.
        """
        self.verify(args)
        if not body.strip():
            raise ProtocolError(400, "empty body")
        encrypted = args.get("encrypt_type", "raw").lower() == "aes"
        if not encrypted and self.cryptos and not self.accept_plaintext:
            raise ProtocolError(
                403,
                "plaintext push refused: WECHAT_AES_KEY is set (兼容/安全模式); while 公众号后台 still "
                "sends 明文, set WECHAT_ACCEPT_PLAINTEXT=true until the switch is done",
            )
        xml, crypto = self._decrypt(args, body) if encrypted else (body, None)
        message = self._parse(xml)
        openid = args.get("openid", "")
        if not openid:
            raise ProtocolError(403, "missing openid in the query (WeChat sends it on every push)")
        if openid != message.source:
            raise ProtocolError(403, "openid in the query is not the message's sender")
        return Push(message=message, encrypted=encrypted, nonce=args["nonce"], crypto=crypto)

    def _decrypt(self, args: dict[str, str], body: bytes) -> tuple[bytes, WeChatCrypto]:
        if not self.cryptos:
            raise ProtocolError(400, "encrypted push but WECHAT_AES_KEY is not set")
        _reject_declarations(body)
        msg_signature = args.get("msg_signature", "")
        if not msg_signature:
            raise ProtocolError(403, "encrypted push without msg_signature")
        for crypto in self.cryptos:
            try:
                plain = crypto.decrypt_message(body, msg_signature, args["timestamp"], args["nonce"])
                return (plain.encode("utf-8") if isinstance(plain, str) else bytes(plain)), crypto
            except InvalidSignatureException:
                raise ProtocolError(403, "bad msg_signature") from None
            except InvalidAppIdException:
                raise ProtocolError(400, "encrypted for another AppID (check WECHAT_APPID)") from None
            except Exception as exc:  # bad base64, padding, XML: try the previous key, then refuse
                log.debug("decryption failed with one key: %r", exc)
        raise ProtocolError(400, "cannot decrypt the push (check WECHAT_AES_KEY)")

    def _parse(self, xml: bytes) -> BaseMessage:
        _reject_declarations(xml)
        try:
            message = parse_message(xml.decode("utf-8"))
        except Exception as exc:
            raise ProtocolError(400, f"malformed XML: {type(exc).__name__}") from None
        if message is None or not message.source or not message.target:
            raise ProtocolError(400, "push without FromUserName/ToUserName")
        try:  # wechatpy converts these when they are first read: a bad one must fail here, not later
            getattr(message, "id", None)
            getattr(message, "create_time", None)
        except (ValueError, OverflowError, OSError):
            raise ProtocolError(400, "malformed MsgId or CreateTime") from None
        return message

    def check_echo(self, args: dict[str, str]) -> str:
        """URL verification (GET): answer the bare echostr once the signature is right."""
        self.verify(args)
        echostr = args.get("echostr", "")
        if not echostr:
            raise ProtocolError(400, "missing echostr")
        return echostr

    def render_text(self, push: Push, text: str) -> str:
        content = xml_safe(truncate_utf8(text, self.max_reply_bytes))
        reply = TextReply(message=push.message, content=content)
        return self._seal(push, reply.render())

    def render_image(self, push: Push, media_id: str) -> str:
        reply = ImageReply(message=push.message, media_id=xml_safe(media_id))
        return self._seal(push, reply.render())

    def _seal(self, push: Push, xml: str) -> str:
        """Encrypt the reply of an encrypted push with the key that opened it (WeChat holds only that
        one while a rotation is under way)."""
        crypto = push.crypto or (self.cryptos[0] if self.cryptos else None)
        if not push.encrypted or crypto is None:
            return xml
        timestamp = str(int(self.clock()))
        return str(crypto.encrypt_message(xml, push.nonce or secrets.token_hex(5), timestamp))


def _reject_declarations(xml: bytes) -> None:
    # a NUL is in no well-formed XML; UTF-16 has one in every ASCII character, and expat reads a document
    # that starts `<\0` or `\0<` as UTF-16 whatever encoding it is given: the search below would not see
    # its `<!DOCTYPE` (xmltodict refuses entity declarations, but no parser should get that far)
    if b"\x00" in xml:
        raise ProtocolError(400, "NUL in the XML (UTF-16 or UTF-32 is not accepted)")
    if _FORBIDDEN_XML.search(xml):
        raise ProtocolError(400, "DOCTYPE/ENTITY declarations are not allowed")


def message_fields(message: BaseMessage) -> dict[str, Any]:
    """The raw fields of a parsed message (wechatpy keeps them in `_data`)."""
    return dict(getattr(message, "_data", {}))
