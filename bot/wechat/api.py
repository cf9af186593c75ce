"""WeChat's server API (customer-service messages, typing, media) with one shared access_token.

wechatpy's client does the requests; we replace its token handling: the token lives in Redis for
every process, is fetched through `stable_token` (so processes cannot invalidate each other)
by one process at a time under a lock, every call has a timeout, and a rejected token
(40001/40014/42001) is refreshed and the call retried exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import redis
import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from bot.config import Settings
from bot.store.metrics import Metrics
from bot.store.wechat import WeChatState

log = logging.getLogger(__name__)

TOKEN_REJECTED = (40001, 40014, 42001)
#: the customer-service API refuses: no permission, window closed, quota used up
CS_REFUSED = (48001, 45015, 45047)


_SECRET_QUERY = re.compile(r"(access_token|secret)=[^&\s'\"]+")


def redact(text: str) -> str:
    """Error texts of `requests` contain the URL, and so the access_token: never log it."""
    return _SECRET_QUERY.sub(r"\1=***", text)


class RedactSecrets(logging.Filter):
    """Rewrites a record whose text carries `access_token=…` or `secret=…` (and its traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


#: the libraries that log the URLs of our calls to WeChat, token included: urllib3 at DEBUG (each
#: request line, retries, redirects), wechatpy and requests (their own loggers and children)
URL_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "requests",
    "wechatpy",
    "wechatpy.client",
    "wechatpy.client.base",
)


def redact_library_logs() -> None:
    """With LOG_LEVEL=DEBUG those loggers write request URLs: their records are redacted (a filter on
    the logger that makes a record, so whichever handler prints it gets the redacted text)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(known, RedactSecrets) for known in logger.filters):
            logger.addFilter(RedactSecrets())


redact_library_logs()


class WeChatAPIError(Exception):
    def __init__(self, errcode: int | None, errmsg: str) -> None:
        errmsg = redact(errmsg)
        super().__init__(f"WeChat API error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class _SharedTokenClient(WeChatClient):
    """wechatpy's client with our token source instead of its in-memory, unlocked one."""

    def __init__(self, api: WeChatAPI, settings: Settings) -> None:
        super().__init__(settings.wechat_appid, settings.wechat_secret, timeout=settings.wechat_http_timeout)
        self.API_BASE_URL = settings.wechat_api_base + "/cgi-bin/"
        self.auto_retry = False
        self._api = api

    @property
    def access_token(self) -> str:
        return self._api.token()


class WeChatAPI:
    def __init__(self, settings: Settings, state: WeChatState, metrics: Metrics) -> None:
        self.settings = settings
        self.state = state
        self.metrics = metrics
        self.http = requests.Session()
        self.wechat = _SharedTokenClient(self, settings)
        self.token_fetches = 0

    def close(self) -> None:
        self.http.close()
        self.wechat._http.close()  # wechatpy's client has no close() of its own

    # --- access_token ---------------------------------------------------------------------
    def token(self, *, rejected: str | None = None) -> str:
        """The shared token; with `rejected`, replace that one (once, under the lock)."""
        cached = self.state.token()
        if cached and cached != rejected:
            return cached
        lock = self.state.token_lock(wait=10)
        if not lock.acquire():
            raise WeChatAPIError(None, "timed out waiting for another process to fetch the access_token")
        try:
            cached = self.state.token()
            if cached and cached != rejected:
                return cached
            return self._fetch_token(force=rejected is not None and cached == rejected)
        finally:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()

    def _fetch_token(self, *, force: bool) -> str:
        body = {
            "grant_type": "client_credential",
            "appid": self.settings.wechat_appid,
            "secret": self.settings.wechat_secret,
            "force_refresh": force,
        }
        result = self._json("post", self.settings.wechat_api_base + "/cgi-bin/stable_token", json=body)
        token, expires_in = str(result["access_token"]), int(result.get("expires_in", 7200))
        self.state.save_token(token, expires_in)
        self.token_fetches += 1
        self.metrics.inc("token_refreshes", forced=str(force).lower())
        log.info("fetched access_token (force_refresh=%s, valid %ss)", force, expires_in)
        return token

    def _json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, url, timeout=self.settings.wechat_http_timeout, **kwargs)
            result = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise WeChatAPIError(None, f"{type(exc).__name__}: {exc}") from None  # its cause holds the token
        if not isinstance(result, dict):
            raise WeChatAPIError(None, "unexpected answer")
        if int(result.get("errcode", 0) or 0) != 0:
            raise WeChatAPIError(int(result["errcode"]), str(result.get("errmsg", "")))
        return result

    # --- calls ------------------------------------------------------------------------------
    def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """Run `self.wechat.<fn>` (e.g. "message.send_text"); retry once on a rejected token."""
        target: Any = self.wechat
        for part in fn.split("."):
            target = getattr(target, part)
        for attempt in (1, 2):
            token = self.token()
            try:
                return target(*args, **kwargs)
            except WeChatClientException as exc:
                code = int(exc.errcode) if exc.errcode is not None else None
                if code in TOKEN_REJECTED and attempt == 1:
                    log.warning("access_token rejected (%s); fetching a new one", code)
                    self.token(rejected=token)
                    continue
                raise WeChatAPIError(code, str(exc.errmsg)) from exc
            except requests.RequestException as exc:
                raise WeChatAPIError(None, f"{type(exc).__name__}: {exc}") from None  # the cause: a URL
        raise AssertionError("unreachable")

    def send_text(self, openid: str, content: str) -> None:
        self.call("message.send_text", openid, content)

    def send_image(self, openid: str, media_id: str) -> None:
        self.call("message.send_image", openid, media_id)

    def typing(self, openid: str, typing: bool = True) -> None:
        command = "Typing" if typing else "CancelTyping"
        self.call("post", "message/custom/typing", data={"touser": openid, "command": command})

    def download_media(self, media_id: str) -> bytes:
        """Temporary media (e.g. a voice message's audio); WeChatAPIError for a body that is not the file.

        wechatpy raises only for a JSON body with a non-zero errcode: any other JSON body comes back
        decoded (a dict, not the response), and a non-JSON body as the response whatever its type. An
        error body without errcode (JSON, text, an HTML error page of a proxy) is no file either."""
        response = self.call("media.download", media_id)
        if not isinstance(response, requests.Response):
            raise WeChatAPIError(None, f"media/get answered JSON instead of the file: {str(response)[:200]}")
        content_type = response.headers.get("Content-Type", "").lower()
        if "json" in content_type or content_type.startswith("text/"):
            raise WeChatAPIError(
                None,
                f"media/get answered {content_type} instead of the file: {response.content[:200]!r}",
            )
        return bytes(response.content)

    def upload_media(self, media_type: str, filename: str, data: bytes) -> str:
        result = self.call("media.upload", media_type, (filename, data))
        return str(result["media_id"])

    def published_articles(self, offset: int, count: int) -> dict[str, Any]:
        """A page of the account's published articles, their HTML included (freepublish/batchget:
        total_count, item_count, item[]); unverified accounts get 48001."""
        body = {"offset": offset, "count": count, "no_content": 0}
        return dict(self.call("post", "freepublish/batchget", data=body))

    def news_materials(self, offset: int, count: int) -> dict[str, Any]:
        """A page of the account's permanent news materials (material/batchget_material, type news)."""
        body = {"type": "news", "offset": offset, "count": count}
        return dict(self.call("post", "material/batchget_material", data=body))
