"""Links to answer pages, and the notes that carry them in chat replies.

A link goes out when it helps: after the first page of an answer longer than one page (「全文：…」),
after a one-page answer with code, a table or a formula, and in the last attempt's reply while an
answer is still being written (bot/delivery/passive.py). Without PUBLIC_BASE_URL nothing here does
anything and no Redis key is touched.
"""

from __future__ import annotations

from bot import texts
from bot.config import Settings
from bot.replies import utf8_len
from bot.store.pages import TOKEN_LENGTH, PageStore

#: answers of these kinds are written by the LLM and have a page; /image answers do not
PAGE_KINDS = ("text", "voice", "minutes", "photo")


class PageLinks:
    def __init__(self, settings: Settings, pages: PageStore) -> None:
        self.base = settings.public_base_url
        self.pages = pages

    @property
    def enabled(self) -> bool:
        return bool(self.base)

    def url(self, answer_id: str) -> str | None:
        """The address of the answer's page (its token made on first use); None without pages or
        when the answer no longer exists."""
        if not self.enabled:
            return None
        token = self.pages.token_for(answer_id)
        return self.address(token) if token else None

    def address(self, token: str) -> str:
        return f"{self.base}/a/{token}"

    def reserve(self) -> int:
        """Bytes a link note may add to a page (every page keeps them free)."""
        if not self.enabled:
            return 0
        widest = self.address("x" * TOKEN_LENGTH)
        return max(
            utf8_len(note.format(url=widest)) for note in (texts.PAGE_LINK_FULL, texts.PAGE_LINK_FORMATTED)
        )

    @staticmethod
    def full_note(url: str) -> str:
        return texts.PAGE_LINK_FULL.format(url=url)

    @staticmethod
    def formatted_note(url: str) -> str:
        return texts.PAGE_LINK_FORMATTED.format(url=url)

    @classmethod
    def without_note(cls, page: str, url: str) -> str:
        """A page without the link note it was given (the inverse of the notes above)."""
        for note in (cls.full_note(url), cls.formatted_note(url)):
            page = page.removesuffix(note)
        return page

    @staticmethod
    def still_working(url: str) -> str:
        return texts.STILL_WORKING_LINK.format(url=url)
