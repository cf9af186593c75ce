"""/image: OpenAI image generation, uploaded to WeChat as temporary media, sent as an image message.

An image travels through the same answer/page machinery as text: its one page is a marker with the
media id, which the reply renderers turn into an image message.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from bot import texts
from bot.config import Settings
from bot.lazy import LazyModule
from bot.llm.openai_backend import make_client
from bot.replies import image_page
from bot.wechat.api import WeChatAPI, WeChatAPIError

if TYPE_CHECKING:
    import openai
else:  # imported on first use (bot/lazy.py): 40 MiB that a process which never calls the API does not load
    openai = LazyModule("openai")


class Refusal(Exception):
    """A job ends with a plain sentence for the user instead of an answer."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(reason)
        self.text = text
        self.reason = reason


class ImageMaker:
    def __init__(self, settings: Settings, api: WeChatAPI, client: openai.OpenAI | None = None) -> None:
        self.client = client or make_client(settings)
        self.model = settings.openai_image_model
        self.api = api

    def close(self) -> None:
        self.client.close()

    def make(self, prompt: str) -> str:
        """Generate, upload, and return the page for the image."""
        try:
            result = self.client.images.generate(
                model=self.model, prompt=prompt, n=1, size="1024x1024", response_format="b64_json"
            )
            data = base64.b64decode((result.data or [])[0].b64_json or "")
        except (openai.OpenAIError, IndexError, ValueError) as exc:
            raise Refusal(texts.IMAGE_FAILED, f"image generation failed: {exc}") from exc
        try:
            return image_page(self.api.upload_media("image", "image.png", data))
        except WeChatAPIError as exc:
            text = texts.IMAGE_NO_UPLOAD if exc.errcode in (48001, 40001, 41001) else texts.IMAGE_FAILED
            raise Refusal(text, f"image upload refused: {exc}") from exc
