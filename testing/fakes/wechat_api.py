"""FakeWeChatAPI: a loopback stand-in for https://api.weixin.qq.com (paths under /cgi-bin/).

Like the real API it answers HTTP 200 with a JSON `errcode` for almost every error.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from testing.fakes.base import FakeHandler, FakeServer, RecordedRequest, parse_multipart

WECHAT_JSON = "application/json; encoding=utf-8"
TEXT_LIMIT_BYTES = 2048
TOKEN_TTL = 7200

Api = Literal["send", "typing", "upload", "media_get", "freepublish", "material"]

ERRMSG: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40004: "invalid media type",
    40006: "invalid meida size",
    40007: "invalid media_id",
    40013: "invalid appid",
    40125: "invalid appsecret",
    41005: "media data missing",
    42001: "access_token expired",
    45002: "content size out of limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    45080: "typing command is not allowed",
    47001: "data format error",
    48001: "api unauthorized",
}
UPLOAD_LIMITS = {
    "image": 10 * 1024 * 1024,
    "voice": 2 * 1024 * 1024,
    "video": 10 * 1024 * 1024,
    "thumb": 64 * 1024,
}


@dataclass(frozen=True)
class Upload:
    type: str
    filename: str | None
    content_type: str
    data: bytes
    media_id: str


@dataclass(frozen=True)
class Media:
    data: bytes
    content_type: str


@dataclass
class _Failure:
    errcode: int
    remaining: int | None  # None: every call until cleared


def error(errcode: int, detail: str = "") -> dict[str, Any]:
    message = detail or ERRMSG.get(errcode, "error")
    return {"errcode": errcode, "errmsg": f"{message} rid: {secrets.token_hex(4)}-{secrets.token_hex(8)}"}


OK: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}


def body_json(request: RecordedRequest) -> dict[str, Any] | None:
    """The JSON object in the body whatever the Content-Type (wechatpy posts JSON without one, as text)."""
    if isinstance(request.json, dict):
        return request.json
    try:
        data = json.loads(request.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class FakeWeChatAPI(FakeServer):
    """Tokens, customer-service messages, typing and media, with switches for every documented failure.

    Knobs (thread-safe): `expire_token(errcode)`, `fail(api, errcode, times)` (`fail_sends`/`fail_uploads`
    shortcuts), `ip_whitelisted`, `old_token_grace` (False: a /cgi-bin/token fetch kills the previous token
    at once, as WeChat does 5 minutes later), `send_delay` seconds, `add_media(...)`; the account's
    published articles and permanent news materials: `published` and `materials` (lists of items in
    WeChat's shape, newest first), listed by freepublish/batchget and material/batchget_material.
    """

    def __init__(self, appid: str = "wx0123456789abcdef", secret: str = "test-secret") -> None:
        super().__init__()
        self.appid = appid
        self.secret = secret
        self.ip_whitelisted = True
        self.old_token_grace = True
        self.send_delay = 0.0
        self._lock = threading.RLock()
        self._current: str | None = None
        self._tokens: dict[str, int] = {}  # token -> 0 (valid) or the errcode it now gets
        self._token_fetches = 0
        self._failures: dict[str, _Failure] = {}
        self._media: dict[str, Media] = {}
        self._sent: list[dict[str, Any]] = []
        self._typing: list[tuple[str, str]] = []
        self._uploads: list[Upload] = []
        #: files served at their path by GET, as WeChat's image hosts serve a photo's PicUrl
        self._pictures: dict[str, Media] = {}
        self.published: list[dict[str, Any]] = []
        self.materials: list[dict[str, Any]] = []

    # ---- knobs -------------------------------------------------------------------------------------
    def expire_token(self, errcode: int = 42001) -> None:
        """Every token minted so far now gets `errcode` (42001 expired, 40001 invalid) until a new one."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, errcode)
            self._current = None

    def fail(self, api: Api, errcode: int | None, times: int | None = None) -> None:
        """Make `api` answer `errcode` for the next `times` calls (None: all calls); errcode None clears."""
        with self._lock:
            if errcode is None:
                self._failures.pop(api, None)
            else:
                self._failures[api] = _Failure(errcode, times)

    def fail_sends(self, errcode: int | None, times: int | None = None) -> None:
        self.fail("send", errcode, times)

    def fail_uploads(self, errcode: int | None, times: int | None = None) -> None:
        self.fail("upload", errcode, times)

    def add_media(self, media_id: str, data: bytes, content_type: str = "audio/amr") -> None:
        with self._lock:
            self._media[media_id] = Media(data, content_type)

    def add_picture(self, path: str, data: bytes, content_type: str = "image/jpeg") -> None:
        """Serve `data` at GET `path` (a photo's PicUrl path; point the host at this fake)."""
        with self._lock:
            self._pictures[path] = Media(data, content_type)

    # ---- accessors ---------------------------------------------------------------------------------
    @property
    def token_fetches(self) -> int:
        """Requests to /cgi-bin/token and /cgi-bin/stable_token (the daily quota counts them all)."""
        with self._lock:
            return self._token_fetches

    @property
    def current_token(self) -> str | None:
        with self._lock:
            return self._current

    def sent_messages(self, openid: str | None = None) -> list[dict[str, Any]]:
        """Bodies of the customer-service messages that were accepted (errcode 0)."""
        with self._lock:
            return [m for m in self._sent if openid is None or m.get("touser") == openid]

    def sent_texts(self, openid: str) -> list[str]:
        return [str(m["text"]["content"]) for m in self.sent_messages(openid) if m.get("msgtype") == "text"]

    def typing_commands(self, openid: str) -> list[str]:
        with self._lock:
            return [command for user, command in self._typing if user == openid]

    @property
    def uploads(self) -> list[Upload]:
        with self._lock:
            return list(self._uploads)

    # ---- routing -----------------------------------------------------------------------------------
    def handle(self, handler: FakeHandler, request: RecordedRequest) -> None:
        routes = {
            ("GET", "/cgi-bin/token"): self._token,
            ("POST", "/cgi-bin/stable_token"): self._stable_token,
            ("POST", "/cgi-bin/message/custom/send"): self._send,
            ("POST", "/cgi-bin/message/custom/typing"): self._typing_command,
            ("GET", "/cgi-bin/media/get"): self._media_get,
            ("POST", "/cgi-bin/media/upload"): self._upload,
            ("POST", "/cgi-bin/freepublish/batchget"): self._freepublish,
            ("POST", "/cgi-bin/material/batchget_material"): self._material_list,
        }
        route = routes.get((request.method, request.path))
        if route is None and request.method == "GET" and request.path in self._pictures:
            route = self._picture
        if route is None:
            handler.send_bytes(b'{"errcode":-1,"errmsg":"invalid url"}', WECHAT_JSON, status=404)
            return
        route(handler, request)

    @staticmethod
    def _answer(handler: FakeHandler, body: dict[str, Any]) -> None:
        handler.send_bytes(json.dumps(body, ensure_ascii=False).encode(), WECHAT_JSON)

    # ---- access_token ------------------------------------------------------------------------------
    def _credentials_error(self, appid: Any, secret: Any, client_ip: str) -> dict[str, Any] | None:
        if appid != self.appid:
            return error(40013)
        if secret != self.secret:
            return error(40125)
        if not self.ip_whitelisted:
            return error(40164, f"invalid ip {client_ip} ipv6 ::ffff:{client_ip}, not in whitelist")
        return None

    def _mint(self, invalidate_old: bool) -> dict[str, Any]:
        token = f"TOKEN_{secrets.token_hex(16)}"
        if invalidate_old:
            self._tokens = dict.fromkeys(self._tokens, 40001)
        self._tokens[token] = 0
        self._current = token
        return {"access_token": token, "expires_in": TOKEN_TTL}

    def _token(self, handler: FakeHandler, request: RecordedRequest) -> None:
        query = request.query
        with self._lock:
            self._token_fetches += 1
            if query.get("grant_type") != "client_credential":
                body = error(40002)
            else:
                problem = self._credentials_error(
                    query.get("appid"), query.get("secret"), handler.client_address[0]
                )
                body = problem or self._mint(invalidate_old=not self.old_token_grace)
        self._answer(handler, body)

    def _stable_token(self, handler: FakeHandler, request: RecordedRequest) -> None:
        data = body_json(request) or {}
        with self._lock:
            self._token_fetches += 1
            if data.get("grant_type") != "client_credential":
                body = error(40002)
            else:
                problem = self._credentials_error(
                    data.get("appid"), data.get("secret"), handler.client_address[0]
                )
                body = problem or self._stable(bool(data.get("force_refresh")))
        self._answer(handler, body)

    def _stable(self, force_refresh: bool) -> dict[str, Any]:
        """Same token while it is valid; a new one after expiry or when forced."""
        if self._current is not None and not force_refresh:
            return {"access_token": self._current, "expires_in": TOKEN_TTL}
        return self._mint(invalidate_old=not self.old_token_grace)

    def _token_error(self, request: RecordedRequest) -> dict[str, Any] | None:
        token = request.query.get("access_token", "")
        with self._lock:
            status = self._tokens.get(token, 40001)
        return error(status) if status else None

    def _injected(self, api: Api) -> dict[str, Any] | None:
        with self._lock:
            failure = self._failures.get(api)
            if failure is None:
                return None
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self._failures[api]
            return error(failure.errcode)

    # ---- customer-service messages -------------------------------------------------------------
    def _send(self, handler: FakeHandler, request: RecordedRequest) -> None:
        """A send held by `send_delay` whose client hung up meanwhile is dropped, not delivered: like
        a request that never fully reached WeChat."""
        if not self.pause(self.send_delay) or handler.client_gone():
            handler.abort()
            return
        self._answer(handler, self._send_result(request))

    def _send_result(self, request: RecordedRequest) -> dict[str, Any]:
        data = body_json(request)
        problem = self._token_error(request)
        if problem:
            return problem
        if not isinstance(data, dict) or not data.get("touser") or not data.get("msgtype"):
            return error(47001 if not isinstance(data, dict) or data.get("touser") else 40003)
        text = data.get("text")
        content = text.get("content", "") if isinstance(text, dict) else ""
        if len(str(content).encode()) > TEXT_LIMIT_BYTES:
            return error(45002)
        problem = self._injected("send")
        if problem:
            return problem
        with self._lock:
            self._sent.append(data)
        return OK

    def _typing_command(self, handler: FakeHandler, request: RecordedRequest) -> None:
        data = body_json(request) or {}
        body = self._token_error(request)
        if body is None and data.get("command") not in ("Typing", "CancelTyping"):
            body = error(47001)
        body = body or self._injected("typing")
        if body is None:
            with self._lock:
                self._typing.append((str(data.get("touser", "")), str(data["command"])))
        self._answer(handler, body or OK)

    # ---- media -------------------------------------------------------------------------------------
    def _media_get(self, handler: FakeHandler, request: RecordedRequest) -> None:
        media_id = request.query.get("media_id", "")
        problem = self._token_error(request) or self._injected("media_get")
        with self._lock:
            media = self._media.get(media_id)
        if problem is not None or media is None:
            self._answer(handler, problem or error(40007))
            return
        filename = f"{media_id}.{media.content_type.rsplit('/', 1)[-1]}"
        disposition = {"Content-disposition": f'attachment; filename="{filename}"'}
        handler.send_bytes(media.data, media.content_type, headers=disposition)

    def _picture(self, handler: FakeHandler, request: RecordedRequest) -> None:
        with self._lock:
            picture = self._pictures[request.path]
        handler.send_bytes(picture.data, picture.content_type)

    def _upload(self, handler: FakeHandler, request: RecordedRequest) -> None:
        media_type = request.query.get("type", "")
        body = self._token_error(request)
        if body is None and media_type not in UPLOAD_LIMITS:
            body = error(40004)
        part = parse_multipart(request.body, request.headers.get("content-type", "")).get("media")
        if body is None and (part is None or not part.data):
            body = error(41005)
        if body is None and part is not None and len(part.data) > UPLOAD_LIMITS[media_type]:
            body = error(40006)
        body = body or self._injected("upload")
        if body is None and part is not None:
            body = self._store_upload(media_type, part.filename, part.content_type, part.data)
        self._answer(handler, body or error(-1))

    def _store_upload(
        self, media_type: str, filename: str | None, content_type: str, data: bytes
    ) -> dict[str, Any]:
        media_id = f"MEDIA_{secrets.token_urlsafe(24)}"
        with self._lock:
            self._uploads.append(Upload(media_type, filename, content_type, data, media_id))
            self._media[media_id] = Media(data, content_type)
        return {"type": media_type, "media_id": media_id, "created_at": int(time.time())}

    # ---- published articles and permanent materials (the knowledge base's sync) -----------------------
    def _freepublish(self, handler: FakeHandler, request: RecordedRequest) -> None:
        data = body_json(request) or {}
        body = self._token_error(request) or self._injected("freepublish")
        with self._lock:
            items = list(self.published)
        if body is None:
            body = self._listing(items, data, strip_content=bool(data.get("no_content")))
        self._answer(handler, body)

    def _material_list(self, handler: FakeHandler, request: RecordedRequest) -> None:
        data = body_json(request) or {}
        body = self._token_error(request) or self._injected("material")
        if body is None and data.get("type") != "news":
            body = error(40004)
        with self._lock:
            items = list(self.materials)
        self._answer(handler, body or self._listing(items, data, strip_content=False))

    @staticmethod
    def _listing(items: list[dict[str, Any]], data: dict[str, Any], strip_content: bool) -> dict[str, Any]:
        """One page: `count` (1-20) items from `offset`, as both APIs answer."""
        offset, count = data.get("offset"), data.get("count")
        if not isinstance(offset, int) or not isinstance(count, int) or offset < 0 or not 1 <= count <= 20:
            return error(47001)
        page = items[offset : offset + count]
        if strip_content:
            page = [_without_content(item) for item in page]
        return {"total_count": len(items), "item_count": len(page), "item": page}


def _without_content(item: dict[str, Any]) -> dict[str, Any]:
    content = dict(item.get("content") or {})
    content["news_item"] = [{**news, "content": ""} for news in content.get("news_item") or []]
    return {**item, "content": content}
