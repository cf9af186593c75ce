"""WeChatSimulator: plays WeChat's servers against our webhook, as WeChat does it.

Signatures and AES are implemented here with `cryptography` directly (not with wechatpy), so that the
tests cross-check the bot's use of wechatpy instead of trusting the same code twice.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import itertools
import os
import re
import secrets
import struct
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

Mode = Literal["plain", "compat", "safe"]
Status = int | Literal["timeout", "error"]

ACCOUNT_ID = "gh_test"
MAX_CONTENT_BYTES = 2048
BLOCK = 32
REPLY_TYPES: dict[str, tuple[str, ...]] = {
    "text": ("Content",),
    "image": ("Image/MediaId",),
    "voice": ("Voice/MediaId",),
    "video": ("Video/MediaId",),
    "music": ("Music",),
    "news": ("ArticleCount", "Articles"),
    "transfer_customer_service": (),
}


class ReplyViolation(AssertionError):
    """Raised in strict mode when a reply breaks a platform rule (wrong user, too long...)."""


# ---- message ids -----------------------------------------------------------------------------------
class MsgIdGenerator:
    """Unique 64-bit MsgIds (shaped like WeChat's, ~2.4e16), thread-safe, unique across simulators."""

    def __init__(self, start: int = 24_000_000_000_000_000) -> None:
        self._counter = itertools.count(start)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return next(self._counter)


next_msg_id = MsgIdGenerator()


# ---- signatures and AES ----------------------------------------------------------------------------
def sign(*parts: str) -> str:
    """WeChat's signature: sha1 of the sorted parts joined, lower-case hex."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def aes_key_bytes(aes_key: str) -> bytes:
    key = base64.b64decode(aes_key + "=")
    if len(key) != 32:
        raise ValueError("EncodingAESKey must be 43 characters (32 bytes once decoded)")
    return key


def encrypt(aes_key: str, appid: str, xml: str, random16: bytes | None = None) -> str:
    """random(16) + big-endian length(4) + xml + appid, PKCS#7 to 32 bytes, AES-256-CBC, IV = key[:16]."""
    key = aes_key_bytes(aes_key)
    body = xml.encode()
    plain = (random16 or os.urandom(16)) + struct.pack(">I", len(body)) + body + appid.encode()
    pad = BLOCK - len(plain) % BLOCK
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def decrypt(aes_key: str, encrypted: str) -> tuple[str, str]:
    """The inverse of encrypt(): returns (xml, appid); ValueError when anything is malformed."""
    key = aes_key_bytes(aes_key)
    data = base64.b64decode(encrypted, validate=True)
    if not data or len(data) % 16:
        raise ValueError("ciphertext is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise ValueError("bad PKCS#7 padding")
    plain = plain[:-pad]
    (length,) = struct.unpack(">I", plain[16:20])
    if 20 + length > len(plain):
        raise ValueError("length field larger than the plaintext")
    return plain[20 : 20 + length].decode(), plain[20 + length :].decode()


# ---- XML -------------------------------------------------------------------------------------------
def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build_xml(fields: list[tuple[str, str | int | float]]) -> str:
    """Strings go in CDATA, numbers bare: the way WeChat writes its pushes."""
    inner = "".join(
        f"<{name}>{cdata(value) if isinstance(value, str) else value}</{name}>" for name, value in fields
    )
    return f"<xml>{inner}</xml>"


def element_dict(element: ET.Element) -> dict[str, Any]:
    """Children as {tag: text or nested dict}; a repeated tag (news `item`) becomes a list."""
    result: dict[str, Any] = {}
    for child in element:
        value: Any = element_dict(child) if len(child) else (child.text or "")
        if child.tag in result:
            previous = result[child.tag]
            result[child.tag] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[child.tag] = value
    return result


def parse_xml(text: str | bytes) -> dict[str, Any]:
    """Parse `<xml>…</xml>`; ValueError when it is not that."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from exc
    if root.tag != "xml":
        raise ValueError(f"root element is <{root.tag}>, not <xml>")
    return element_dict(root)


# ---- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    """One POST: `status` is the HTTP code, "timeout" (no full answer in time) or "error" (refused...)."""

    status: Status
    elapsed: float
    body: bytes
    params: dict[str, str]
    problem: str | None = None  # why this attempt did not count as answered


@dataclass
class Delivery:
    openid: str
    msg_id: int | None
    attempts: list[Attempt] = field(default_factory=list)
    reply: dict[str, Any] | None = None
    reply_xml: str | None = None
    acknowledged: bool = False
    elapsed: float = 0.0
    violations: list[str] = field(default_factory=list)

    @property
    def user_sees_failure(self) -> bool:
        """「该公众号提供的服务出现故障，请稍后再试」: no attempt got an acknowledgement or a valid reply."""
        return not self.acknowledged and self.reply is None

    @property
    def text(self) -> str | None:
        if self.reply is None or self.reply.get("MsgType") != "text":
            return None
        return str(self.reply.get("Content", ""))


# ---- the simulator ---------------------------------------------------------------------------------
class WeChatSimulator:
    """Push messages to a webhook with WeChat's signatures, encryption, 5 s timeouts and 3 attempts."""

    def __init__(
        self,
        url: str,
        token: str,
        appid: str,
        aes_key: str | None = None,
        mode: Mode | str = "plain",
        attempt_timeout: float = 5.0,
        attempts: int = 3,
        clock: Callable[[], float] = time.time,
        account_id: str = ACCOUNT_ID,
        max_content_bytes: int = MAX_CONTENT_BYTES,
        strict: bool = False,
    ) -> None:
        if mode not in ("plain", "compat", "safe"):
            raise ValueError(f"mode must be plain, compat or safe, not {mode!r}")
        if mode != "plain" and not aes_key:
            raise ValueError(f"mode {mode!r} needs an aes_key")
        self.url = url
        self.token = token
        self.appid = appid
        self.aes_key = aes_key
        self.mode = mode
        self.attempt_timeout = attempt_timeout
        self.attempts = attempts
        self.clock = clock
        self.account_id = account_id
        self.max_content_bytes = max_content_bytes
        self.strict = strict
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    # ---- inbound XML builders ------------------------------------------------------------------
    def _head(
        self, openid: str, msg_type: str, create_time: int | None
    ) -> list[tuple[str, str | int | float]]:
        when = int(self.clock()) if create_time is None else create_time
        return [
            ("ToUserName", self.account_id),
            ("FromUserName", openid),
            ("CreateTime", when),
            ("MsgType", msg_type),
        ]

    def message_xml(
        self,
        openid: str,
        msg_type: str,
        fields: list[tuple[str, str | int | float]],
        msg_id: int | None = None,
        create_time: int | None = None,
    ) -> str:
        """Any user message: header + fields + a fresh unique MsgId."""
        msg_id = next_msg_id() if msg_id is None else msg_id
        return build_xml([*self._head(openid, msg_type, create_time), *fields, ("MsgId", msg_id)])

    def text_xml(
        self, openid: str, content: str, msg_id: int | None = None, create_time: int | None = None
    ) -> str:
        return self.message_xml(openid, "text", [("Content", content)], msg_id, create_time)

    def image_xml(
        self, openid: str, media_id: str, pic_url: str | None = None, msg_id: int | None = None
    ) -> str:
        url = pic_url or f"http://mmbiz.qpic.cn/mmbiz_jpg/{media_id}/0"
        return self.message_xml(openid, "image", [("PicUrl", url), ("MediaId", media_id)], msg_id)

    def voice_xml(
        self,
        openid: str,
        media_id: str,
        recognition: str | None = None,
        fmt: str = "amr",
        msg_id: int | None = None,
    ) -> str:
        """`recognition` None leaves the field out (speech recognition off); "" sends it empty."""
        fields: list[tuple[str, str | int | float]] = [("MediaId", media_id), ("Format", fmt)]
        if recognition is not None:
            fields.append(("Recognition", recognition))
        return self.message_xml(openid, "voice", fields, msg_id)

    def video_xml(
        self, openid: str, media_id: str, thumb_media_id: str = "thumb", short: bool = False
    ) -> str:
        fields: list[tuple[str, str | int | float]] = [
            ("MediaId", media_id),
            ("ThumbMediaId", thumb_media_id),
        ]
        return self.message_xml(openid, "shortvideo" if short else "video", fields)

    def location_xml(self, openid: str, x: float, y: float, scale: int = 15, label: str = "") -> str:
        fields: list[tuple[str, str | int | float]] = [("Location_X", x), ("Location_Y", y)]
        return self.message_xml(openid, "location", [*fields, ("Scale", scale), ("Label", label)])

    def link_xml(self, openid: str, title: str, description: str, url: str) -> str:
        fields: list[tuple[str, str | int | float]] = [
            ("Title", title),
            ("Description", description),
            ("Url", url),
        ]
        return self.message_xml(openid, "link", fields)

    def event_xml(
        self,
        openid: str,
        event: str,
        event_key: str | None = None,
        create_time: int | None = None,
        **extra: str | int | float,
    ) -> str:
        """An event (no MsgId). WeChat spells them subscribe, unsubscribe, CLICK, VIEW, SCAN, LOCATION."""
        return self._event_xml(openid, event, event_key, create_time, list(extra.items()))

    def _event_xml(
        self,
        openid: str,
        event: str,
        event_key: str | None,
        create_time: int | None,
        extra: list[tuple[str, str | int | float]],
    ) -> str:
        fields = [*self._head(openid, "event", create_time), ("Event", event)]
        if event_key is not None:
            fields.append(("EventKey", event_key))
        return build_xml(fields + extra)

    def subscribe_xml(self, openid: str, scene: str | None = None) -> str:
        """A follow; from a QR code when `scene` is given (EventKey qrscene_<scene> + Ticket)."""
        if scene is None:
            return self.event_xml(openid, "subscribe")
        return self.event_xml(openid, "subscribe", f"qrscene_{scene}", Ticket=f"TICKET_{scene}")

    def unsubscribe_xml(self, openid: str) -> str:
        return self.event_xml(openid, "unsubscribe")

    def click_xml(self, openid: str, key: str) -> str:
        return self.event_xml(openid, "CLICK", key)

    def view_xml(self, openid: str, url: str) -> str:
        return self.event_xml(openid, "VIEW", url)

    def scan_xml(self, openid: str, scene: str) -> str:
        return self.event_xml(openid, "SCAN", scene, Ticket=f"TICKET_{scene}")

    def location_event_xml(
        self, openid: str, latitude: float, longitude: float, precision: float = 65.0
    ) -> str:
        return self.event_xml(openid, "LOCATION", Latitude=latitude, Longitude=longitude, Precision=precision)

    # ---- signing and envelopes -----------------------------------------------------------------
    def encrypt(self, xml: str) -> str:
        assert self.aes_key, "no aes_key"
        return encrypt(self.aes_key, self.appid, xml)

    def envelope(self, xml: str) -> tuple[bytes, str | None]:
        """The POST body for this mode, and the Encrypt value (None in plain mode)."""
        if self.mode == "plain":
            return xml.encode(), None
        encrypted = self.encrypt(xml)
        if self.mode == "safe":
            to_user = str(parse_xml(xml).get("ToUserName", self.account_id))
            return build_xml([("ToUserName", to_user), ("Encrypt", encrypted)]).encode(), encrypted
        return xml.replace("</xml>", f"<Encrypt>{cdata(encrypted)}</Encrypt></xml>").encode(), encrypted

    def signed_params(self, openid: str | None = None, encrypted: str | None = None) -> dict[str, str]:
        """signature/timestamp/nonce(/openid), plus encrypt_type and msg_signature when encrypted."""
        timestamp = str(int(self.clock()))
        nonce = str(secrets.randbelow(9_000_000_000) + 1_000_000_000)
        params = {"signature": sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        if openid is not None:
            params["openid"] = openid
        if encrypted is not None:
            params["encrypt_type"] = "aes"
            params["msg_signature"] = sign(self.token, timestamp, nonce, encrypted)
        return params

    # ---- pushing -------------------------------------------------------------------------------
    def push(self, xml: str) -> Delivery:
        """Deliver like WeChat: up to `attempts` POSTs of the same body until one is answered properly."""
        fields = parse_xml(xml)
        openid = str(fields.get("FromUserName", ""))
        msg_id = int(fields["MsgId"]) if fields.get("MsgId") else None
        body, encrypted = self.envelope(xml)
        delivery = Delivery(openid, msg_id)
        started = time.monotonic()
        for _ in range(self.attempts):
            attempt = self._attempt(body, self.signed_params(openid, encrypted))
            attempt = self._judge(attempt, delivery)
            delivery.attempts.append(attempt)
            if attempt.problem is None:
                break
        delivery.elapsed = time.monotonic() - started
        with self._lock:
            self._deliveries.append(delivery)
        if self.strict and delivery.violations:
            raise ReplyViolation("; ".join(delivery.violations))
        return delivery

    def _target(
        self, params: dict[str, str]
    ) -> tuple[type[http.client.HTTPConnection], str, int | None, str]:
        split = urlsplit(self.url)
        query = urlencode(dict(parse_qsl(split.query)) | params)
        kind = http.client.HTTPSConnection if split.scheme == "https" else http.client.HTTPConnection
        return kind, split.hostname or "127.0.0.1", split.port, f"{split.path or '/'}?{query}"

    def _attempt(self, body: bytes, params: dict[str, str]) -> Attempt:
        """One POST that must be completely answered within attempt_timeout (else WeChat hangs up)."""
        kind, host, port, target = self._target(params)
        started = time.monotonic()
        deadline = started + self.attempt_timeout
        connection = kind(host, port, timeout=self.attempt_timeout)
        headers = {"Content-Type": "text/xml", "User-Agent": "Mozilla/4.0", "Accept": "*/*"}
        try:
            connection.request("POST", target, body=body, headers=headers)
            status, data = self._read_response(connection, deadline)
        except TimeoutError:
            return Attempt("timeout", time.monotonic() - started, b"", params, "timeout")
        except (OSError, http.client.HTTPException) as exc:
            return Attempt("error", time.monotonic() - started, b"", params, f"connection error: {exc!r}")
        finally:
            connection.close()
        return Attempt(status, time.monotonic() - started, data, params)

    @staticmethod
    def _read_response(connection: http.client.HTTPConnection, deadline: float) -> tuple[int, bytes]:
        def arm() -> None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if connection.sock is not None:
                connection.sock.settimeout(remaining)

        arm()
        response = connection.getresponse()
        chunks: list[bytes] = []
        while True:
            arm()
            chunk = response.read1(65536)
            if not chunk:
                break
            chunks.append(chunk)
        arm()
        return response.status, b"".join(chunks)

    def _judge(self, attempt: Attempt, delivery: Delivery) -> Attempt:
        """Decide whether WeChat would accept this answer; fills delivery.reply / acknowledged."""
        if attempt.problem is not None:
            return attempt
        if attempt.status != 200:
            return _with_problem(attempt, f"HTTP {attempt.status}")
        if attempt.body in (b"", b"success"):
            delivery.acknowledged = True
            return attempt
        try:
            reply_xml = self._open_reply(attempt.body)
            reply = parse_xml(reply_xml)
            self._check_reply(reply)
        except (ValueError, UnicodeDecodeError) as exc:
            return _with_problem(attempt, f"invalid reply: {exc}")
        delivery.reply, delivery.reply_xml = reply, reply_xml
        delivery.violations.extend(self._violations(reply, delivery.openid))
        return attempt

    def _open_reply(self, body: bytes) -> str:
        """The reply's plaintext XML; in safe mode (and compat, when encrypted) verify and decrypt it."""
        text = body.decode()
        outer = parse_xml(text)
        if self.mode == "plain" or (self.mode == "compat" and "Encrypt" not in outer):
            return text
        missing = [k for k in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce") if not outer.get(k)]
        if missing:
            raise ValueError(f"encrypted reply lacks {', '.join(missing)}")
        encrypted = str(outer["Encrypt"])
        if sign(self.token, str(outer["TimeStamp"]), str(outer["Nonce"]), encrypted) != outer["MsgSignature"]:
            raise ValueError("MsgSignature does not match")
        assert self.aes_key
        xml, appid = decrypt(self.aes_key, encrypted)
        if appid != self.appid:
            raise ValueError(f"reply encrypted for appid {appid!r}, not {self.appid!r}")
        return xml

    @staticmethod
    def _check_reply(reply: dict[str, Any]) -> None:
        """What WeChat needs to show anything: the header fields and the fields of the MsgType."""
        for name in ("ToUserName", "FromUserName", "CreateTime", "MsgType"):
            if not reply.get(name):
                raise ValueError(f"reply lacks {name}")
        if not str(reply["CreateTime"]).isdigit():
            raise ValueError("CreateTime is not an integer")
        required = REPLY_TYPES.get(str(reply["MsgType"]))
        if required is None:
            raise ValueError(f"unknown reply MsgType {reply['MsgType']!r}")
        for path in required:
            node: Any = reply
            for part in path.split("/"):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                raise ValueError(f"{reply['MsgType']} reply lacks {path}")

    def _violations(self, reply: dict[str, Any], openid: str) -> list[str]:
        problems = []
        if reply.get("ToUserName") != openid:
            problems.append(f"ToUserName {reply.get('ToUserName')!r} is not the user {openid!r}")
        if reply.get("FromUserName") != self.account_id:
            problems.append(
                f"FromUserName {reply.get('FromUserName')!r} is not the account {self.account_id!r}"
            )
        size = len(str(reply.get("Content", "")).encode())
        if size > self.max_content_bytes:
            problems.append(f"Content is {size} bytes, over {self.max_content_bytes}")
        if reply.get("MsgType") == "text" and not reply.get("Content"):
            problems.append("empty text Content")
        return problems

    # ---- conveniences --------------------------------------------------------------------------
    def send_text(self, openid: str, content: str) -> Delivery:
        return self.push(self.text_xml(openid, content))

    def send_voice(
        self, openid: str, media_id: str, recognition: str | None = None, fmt: str = "amr"
    ) -> Delivery:
        return self.push(self.voice_xml(openid, media_id, recognition, fmt))

    def send_image(self, openid: str, media_id: str, pic_url: str | None = None) -> Delivery:
        return self.push(self.image_xml(openid, media_id, pic_url))

    def send_event(
        self, openid: str, event: str, event_key: str | None = None, **extra: str | int | float
    ) -> Delivery:
        return self.push(self._event_xml(openid, event, event_key, None, list(extra.items())))

    def get_url_check(self, echostr: str, params: dict[str, str] | None = None) -> requests.Response:
        """The GET WeChat sends when the URL is configured (echostr stays plaintext in every mode)."""
        query = self.signed_params() | {"echostr": echostr} | (params or {})
        return requests.get(self.url, params=query, timeout=self.attempt_timeout)

    def post_raw(
        self,
        body: bytes,
        params: dict[str, str] | None = None,
        sign: bool = True,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """A single POST of arbitrary bytes (hostile-input tests); signed unless sign=False."""
        query: dict[str, str] = {}
        if sign:
            match = re.search(rb"<Encrypt>(?:<!\[CDATA\[)?([^<\]]*)", body)
            encrypted = match.group(1).decode(errors="replace") if match and self.mode != "plain" else None
            query = self.signed_params(encrypted=encrypted)
        query |= params or {}
        sent_headers = {"Content-Type": "text/xml"} | (headers or {})
        return requests.post(
            self.url, params=query, data=body, headers=sent_headers, timeout=self.attempt_timeout
        )


def _with_problem(attempt: Attempt, problem: str) -> Attempt:
    return Attempt(attempt.status, attempt.elapsed, attempt.body, attempt.params, problem)
