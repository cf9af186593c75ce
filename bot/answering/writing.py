"""What one generation run does with the model's stream besides cutting pages (generation.py):

* the answer's Markdown becomes chat text (bot/format/chat.py), block by block as blocks complete, so
  that a page that is out never changes;
* the model's thinking (Reasoning pieces) never reaches the chat: it goes to the answer page, and its
  time is the model working, not the answer being late — the typing indicator is renewed meanwhile
  (active mode), and the time to the first page is counted without it;
* with answer pages (PUBLIC_BASE_URL), the page's live record is kept up to date, and the page's link
  is added to the first page of an answer longer than one page, or to a one-page answer with code, a
  table or a formula.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from bot.format.chat import ChatStream
from bot.knowledge.base import listed_sources
from bot.llm import Piece, Reasoning
from bot.pages.links import PAGE_KINDS
from bot.pages.live import LiveRecord
from bot.runtime import Runtime
from bot.store.answers import Answer
from bot.store.pages import Source

log = logging.getLogger(__name__)

#: WeChat shows the typing indicator for 15 s: renewed this often while the model works (seconds)
TYPING_RENEW = 12.0
#: WeChat accepts Typing only within this long of the user's message (45080 after it)
TYPING_WINDOW = 30.0


class Writing:
    def __init__(
        self,
        runtime: Runtime,
        answer: Answer,
        lease: str,
        *,
        resumed: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime, self.answer, self.clock = runtime, answer, clock
        self.chat = ChatStream()
        links = runtime.page_links
        self.links = links if links.enabled and answer.kind in PAGE_KINDS else None
        #: a page of this answer already carries its link (or was out before this run began)
        self.linked = resumed
        self.live: LiveRecord | None = None
        if self.links is not None:
            keep = runtime.settings.show_reasoning == "page"
            self.live = LiveRecord(runtime.pages, answer.id, lease, keep_reasoning=keep, clock=clock)
        self.started = clock()
        self.typed = self.started  # the caller shows the typing indicator as the run starts
        self.thought = False
        self.sources: list[Source] = []
        self.first_token: float | None = None

    # --- the stream -------------------------------------------------------------------------------
    def start(self, sources: list[Source]) -> None:
        """The LLM is about to be asked."""
        self.started = self.typed = self.clock()
        self.sources = list(sources)
        if self.live is not None:
            self.live.start(sources)

    def found(self, sources: Sequence[Source]) -> None:
        """The documents the model found with the search tool: the page lists them after the grounding's,
        as the chat's footer does."""
        listed = listed_sources(self.sources, sources)
        if self.live is not None and listed != self.sources:
            self.live.list_sources(listed)

    def take(self, piece: Piece) -> str:
        """One piece of the stream; returns the chat text it completed (often "")."""
        self._keep_typing()
        if isinstance(piece, Reasoning):
            self.thought = True
            if self.live is not None:
                self.live.think(piece.text)
            return ""
        if self.first_token is None:
            self.first_token = self.clock()
            if self.thought:
                self.runtime.metrics.observe("reasoning_seconds", self.thinking_seconds)
        if self.live is not None:
            self.live.write(piece)
        return self.chat.feed(piece)

    def finish(self) -> str:
        """The stream ended (or failed): the chat text still held back for its block to complete."""
        return self.chat.finish()

    def end(self, state: str, error: str = "") -> None:
        """The answer is written (`done`) or failed: the page says so."""
        if self.live is not None:
            self.live.end(state, error)

    @property
    def thinking_seconds(self) -> float:
        """How long the model thought before its first answer token (0 for a model that does not)."""
        if not self.thought:
            return 0.0
        return (self.first_token if self.first_token is not None else self.clock()) - self.started

    def _keep_typing(self) -> None:
        if self.answer.delivery != "active":
            return
        now = self.clock()
        if now - self.typed >= TYPING_RENEW and now - self.started < TYPING_WINDOW:
            self.typed = now
            self.runtime.sender.typing(self.answer.openid)

    # --- links ------------------------------------------------------------------------------------
    def link(self, pages: list[str], *, first: bool, final: bool) -> list[str]:
        """Add the page's link where it helps: to page 1 of an answer longer than one page, or to the
        only page of an answer with code, a table or a formula. `first`: pages[0] is page 1; `final`:
        these are the answer's last pages."""
        if self.links is None or self.linked or not pages or not first:
            return pages
        longer = not final or len(pages) > 1
        if not longer and not self.chat.rich:
            return pages
        url = self.links.url(self.answer.id)
        if url is None:
            return pages
        self.linked = True
        if longer:
            return [pages[0] + self.links.full_note(url), *pages[1:]]
        return [pages[0] + self.links.formatted_note(url)]
