"""Photos followers send (VISION_MODEL), asked about to an OpenAI-compatible model that accepts images.

The image comes from WeChat's media API (/cgi-bin/media/get with the push's MediaId). When WeChat
refuses that (an account without the permission, an expired media id), from the PicUrl the push
carried — but only from WeChat's own image hosts (PIC_HOSTS), over http(s), without following
redirects, and at most PHOTO_MAX_BYTES: the URL comes from the push, and the bot must not become a
way to make it fetch anything else. The image goes to the model as an image part (a data: URL) of the
last user message; it is never stored, and the conversation history keeps a short text note instead.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from bot.config import Settings
from bot.llm import ChatBackend, ChatMessage
from bot.llm.openai_backend import OpenAIBackend
from bot.wechat.api import WeChatAPI, WeChatAPIError

log = logging.getLogger(__name__)

#: larger photos are refused (WeChat's own limit for an image message is 10 MB)
PHOTO_MAX_BYTES = 10 * 1024 * 1024
#: the hosts of WeChat's PicUrl (its image CDN): a host is one of them or a subdomain
PIC_HOSTS = ("qpic.cn", "qlogo.cn")
#: seconds to fetch a photo (it may be several MB)
FETCH_TIMEOUT = 20.0
#: photos kept in a worker's memory for follow-up questions (a few minutes, never on disk or in Redis)
CACHE_ENTRIES = 16
CACHE_SECONDS = 600.0


class PhotoError(Exception):
    """The photo could not be had (refused, too large, not an image)."""


@dataclass(frozen=True)
class Image:
    data: bytes
    mime: str

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode()}"


def image_type(data: bytes) -> str | None:
    """The MIME type of a JPEG, PNG, GIF or WebP image (from its first bytes), else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def is_wechat_image_url(url: str) -> bool:
    """http(s) on one of WeChat's image hosts, default port, no credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    on_host = any(host == name or host.endswith("." + name) for name in PIC_HOSTS)
    return (
        parts.scheme in ("http", "https")
        and on_host
        and port in (None, 80, 443)
        and not parts.username
        and not parts.password
    )


def with_image(message: ChatMessage, image: Image) -> ChatMessage:
    """A user message with the image added as an image part after its text."""
    text = message.get("content", "")
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image.data_url()}}]
    return {**message, "content": parts}


class Vision:
    def __init__(self, settings: Settings, api: WeChatAPI, backend: ChatBackend | None = None) -> None:
        self.model = settings.vision_model
        self.api = api
        self.http = requests.Session()
        #: the OpenAI-compatible server of OPENAI_BASE_URL, whatever LLM_BACKEND is
        self.backend: ChatBackend = backend or OpenAIBackend(settings)
        self._cache: OrderedDict[str, tuple[float, Image]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.model)

    def close(self) -> None:
        self.http.close()
        self.backend.close()

    def fetch(self, media_id: str, pic_url: str = "") -> Image:
        """The photo of a push: from the media API, else from its PicUrl; PhotoError when neither works."""
        if (cached := self._cached(media_id)) is not None:
            return cached
        try:
            data = self.api.download_media(media_id)
        except WeChatAPIError as exc:
            if not pic_url:
                raise PhotoError(f"media API refused the photo ({exc}) and there is no PicUrl") from exc
            log.info("media API refused photo %s (%s); trying its PicUrl", media_id, exc)
            data = self._download(pic_url)
        image = self._checked(data)
        with self._lock:
            self._cache[media_id] = (time.monotonic(), image)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return image

    def _cached(self, media_id: str) -> Image | None:
        with self._lock:
            found = self._cache.get(media_id)
            if found is None or time.monotonic() - found[0] > CACHE_SECONDS:
                self._cache.pop(media_id, None)
                return None
            return found[1]

    def _download(self, url: str) -> bytes:
        if not is_wechat_image_url(url):
            raise PhotoError(f"PicUrl is not on WeChat's image hosts: {url[:100]!r}")
        try:
            with self.http.get(url, stream=True, timeout=FETCH_TIMEOUT, allow_redirects=False) as response:
                if response.status_code != 200:
                    raise PhotoError(f"PicUrl answered HTTP {response.status_code}")
                if int(response.headers.get("Content-Length") or 0) > PHOTO_MAX_BYTES:
                    raise PhotoError("photo larger than PHOTO_MAX_BYTES")
                data = bytearray()
                for chunk in response.iter_content(chunk_size=65536):
                    data += chunk
                    if len(data) > PHOTO_MAX_BYTES:
                        raise PhotoError("photo larger than PHOTO_MAX_BYTES")
        except requests.RequestException as exc:
            raise PhotoError(f"PicUrl unreachable: {type(exc).__name__}") from exc
        return bytes(data)

    @staticmethod
    def _checked(data: bytes) -> Image:
        if len(data) > PHOTO_MAX_BYTES:
            raise PhotoError("photo larger than PHOTO_MAX_BYTES")
        mime = image_type(data)
        if mime is None:
            raise PhotoError("not a JPEG, PNG, GIF or WebP image")
        return Image(data, mime)
