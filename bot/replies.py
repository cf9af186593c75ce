"""What a reply page is, shared by the layers that make pages and the ones that send them.

A page is text that fits WeChat's byte limit, or an image (a marker with its media id, which the
reply renderers turn into an image message). The byte helpers never cut a UTF-8 character.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot import texts

if TYPE_CHECKING:
    from bot.store.answers import Answer

#: a page that is an image, not text (control characters never survive into text pages)
IMAGE_MARKER = "\x00image:"
#: a question quoted in a note (the late-answer prefix) is cut to this many characters
QUESTION_PREVIEW_CHARS = 20


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` that fits in `max_bytes` UTF-8 bytes (never half a character)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def preview(question: str) -> str:
    """A short form of a question, as quoted in notes."""
    question = " ".join(question.split())
    if len(question) <= QUESTION_PREVIEW_CHARS:
        return question
    return question[:QUESTION_PREVIEW_CHARS] + "…"


def question_of(answer: Answer) -> str:
    """The question an answer answers, as both the late heading in the chat and the answer page name it:
    a meeting's minutes keep the transcript in `question`, and a voice message that failed before its
    transcript has none."""
    if answer.kind == "minutes":
        return texts.PAGE_MINUTES_QUESTION
    if not answer.question:
        return texts.PAGE_VOICE_QUESTION
    return answer.question


def image_page(media_id: str) -> str:
    return IMAGE_MARKER + media_id


def image_media_id(page: str) -> str | None:
    return page[len(IMAGE_MARKER) :] if page.startswith(IMAGE_MARKER) else None
