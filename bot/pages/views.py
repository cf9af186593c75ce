"""The answer page, served by the bot's own Flask app (app.py registers it when PUBLIC_BASE_URL is set).

    GET /a/<token>          the page: the question and the answer, rendered on the server
    GET /a/<token>/live     its live state as JSON, for the page's script (204 when unchanged)
    GET /a/assets/<name>    the page's stylesheet and script (the bot's own files; nothing from a CDN)

A page shows one answer and its question, nothing else: not the user, not other answers. An unknown,
malformed or expired token gets 404, the same for each. Live updates are short polls (about one a
second while the answer is written, answered from one Redis read when nothing changed): no request
holds a gunicorn thread while it waits, so readers never take threads from WeChat's pushes. Without
script (blocked in some WebViews), the page reloads itself every few seconds until the answer is done.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from html import escape
from pathlib import Path

from flask import Blueprint, Response, abort, jsonify, render_template, request
from markupsafe import Markup

from bot import texts
from bot.config import Settings
from bot.format.html import code_css, sanitize, text_to_html, to_html
from bot.headers import security_headers
from bot.replies import question_of
from bot.store.answers import Answer, AnswerStore
from bot.store.pages import TOKEN_LENGTH, LiveAnswer, PageStore, Source

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")
#: a page without script reloads itself this often while the answer is written (seconds), and stops
#: when the answer is this old (a page's script stops polling after 20 minutes too)
NOSCRIPT_REFRESH = 4
STOP_REFRESHING = 20 * 60

#: the model's output is untrusted: no inline script or style, nothing from elsewhere, no framing
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = security_headers(CSP)
STATUS = {
    "queued": texts.PAGE_THINKING,
    "thinking": texts.PAGE_THINKING,
    "writing": texts.PAGE_WRITING,
    "done": texts.PAGE_DONE,
    "failed": texts.PAGE_FAILED,
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    mimetype: str
    version: str


@cache
def assets() -> dict[str, Asset]:
    """The page's files, read once: our stylesheet with Pygments' code colours, our script, our icon."""
    css = (STATIC / "page.css").read_text(encoding="utf-8") + "\n" + code_css() + "\n"
    files = {
        "page.css": (css.encode(), "text/css"),
        "page.js": ((STATIC / "page.js").read_bytes(), "text/javascript"),
        "icon.svg": ((STATIC / "icon.svg").read_bytes(), "image/svg+xml"),
    }
    return {
        name: Asset(data, mimetype, hashlib.sha256(data).hexdigest()[:12])
        for name, (data, mimetype) in files.items()
    }


@dataclass(frozen=True)
class View:
    """Everything the page shows of one answer, rendered."""

    question: Markup
    answer: Markup
    reasoning: Markup
    sources: Markup
    error: str
    state: str
    version: int

    @property
    def done(self) -> bool:
        return self.state in ("done", "failed")

    def live(self) -> dict[str, object]:
        return {
            "v": self.version,
            "state": self.state,
            "status": STATUS.get(self.state, texts.PAGE_THINKING),
            "done": self.done,
            "answer": str(self.answer),
            "reasoning": str(self.reasoning),
            "sources": str(self.sources),
            "error": self.error,
        }


#: the live poll's `v` (an answer's version) is at most this many digits; longer is not a version
MAX_VERSION_DIGITS = 18


def answer_pages(
    settings: Settings, answers: AnswerStore, store: PageStore, mask: Callable[[str], str]
) -> Blueprint:
    """The blueprint; `mask` hides sensitive words (SENSITIVE_WORDS) on the page as in chat."""
    pages = Blueprint("answer_pages", __name__, template_folder="templates")

    def find(token: str) -> tuple[Answer, LiveAnswer]:
        """The answer a token opens, and its live record; 404 for anything else."""
        answer_id = store.answer_of(token) if TOKEN_PATTERN.fullmatch(token) else None
        answer = answers.get(answer_id) if answer_id else None
        if answer is None:
            abort(404)
        return answer, store.live(answer.id)

    def view(answer: Answer, live: LiveAnswer) -> View:
        text = live.text
        if not text and live.state == "queued" and answer.finished:  # written before pages existed
            text = "".join(answers.page(answer, index) or "" for index in range(answer.page_count))
        # an answer that ended outside its run (abandoned, or its run killed) left its record unfinished
        state = answer.status if answer.finished and not live.finished else live.state
        show_reasoning = settings.show_reasoning == "page" and live.reasoning
        return View(
            question=Markup(text_to_html(question_of(answer))),
            answer=Markup(to_html(mask(text))) if text else Markup(""),
            reasoning=Markup(to_html(mask(live.reasoning))) if show_reasoning else Markup(""),
            sources=Markup(sources_html(live.sources)),
            error=live.error or (answer.error if answer.status == "failed" else ""),
            state=state,
            version=live.version,
        )

    @pages.get("/a/<token>")
    def page(token: str) -> Response:
        answer, live = find(token)
        shown = view(answer, live)
        expires = datetime.fromtimestamp(answer.created + settings.answer_ttl, settings.zone)
        html = render_template(
            "answer_pages/page.html",
            t=texts,
            view=shown,
            token=token,
            status=STATUS.get(shown.state, texts.PAGE_THINKING),
            footer=texts.PAGE_FOOTER.format(expires=expires.strftime("%Y-%m-%d %H:%M")),
            # reload while it is written; not forever for an answer whose job was lost
            refresh=NOSCRIPT_REFRESH if time.time() - answer.created < STOP_REFRESHING else 0,
            assets=assets(),
        )
        return secured(Response(html, mimetype="text/html"))

    @pages.get("/a/<token>/live")
    def live(token: str) -> Response:
        """The page's poll: 204 from two small reads while nothing changed (the live record expires
        with the answer, so a version still there is an answer still there). An answer that failed
        outside its run changed although its record did not: the poll tells it (and the page stops)."""
        seen = request.args.get("v", "")
        answer_id = store.answer_of(token) if TOKEN_PATTERN.fullmatch(token) else None
        # ASCII digits, and not too many for int(): "²" is a digit to str.isdigit, 5,000 digits too many
        known = seen.isascii() and seen.isdigit() and len(seen) <= MAX_VERSION_DIGITS
        if answer_id and known and int(seen) and (int(seen), False) == store.progress(answer_id):
            return secured(Response(status=204))
        answer, record = find(token)
        return secured(jsonify(view(answer, record).live()))

    @pages.get("/a/assets/<name>")
    def asset(name: str) -> Response:
        found = assets().get(name)
        if found is None:
            abort(404)
        response = Response(found.body, mimetype=found.mimetype)
        response.headers["Cache-Control"] = "public, max-age=86400"
        response.set_etag(found.version)
        response.make_conditional(request)
        return secured(response, cache=True)

    @pages.get("/a/<path:anything>")
    def elsewhere(anything: str) -> Response:
        """Any other address under /a/ is a page that does not exist, told the same way."""
        abort(404)

    @pages.errorhandler(404)
    def not_found(exc: Exception) -> Response:
        """A plain page for an unknown or expired link (what a follower sees most often here)."""
        days = max(1, settings.answer_ttl // 86400)
        html = render_template(
            "answer_pages/not_found.html", t=texts, message=texts.PAGE_NOT_FOUND.format(days=days)
        )
        return secured(Response(html, status=404, mimetype="text/html"))

    return pages


def secured(response: Response, *, cache: bool = False) -> Response:
    response.headers.update(SECURITY_HEADERS)
    if not cache:
        response.headers["Cache-Control"] = "no-store"
    return response


def sources_html(sources: list[Source]) -> str:
    items = []
    for source in sources:
        title = escape(source.title)
        link = source.url.startswith(("https://", "http://"))
        items.append(f'<li><a href="{escape(source.url)}">{title}</a></li>' if link else f"<li>{title}</li>")
    return sanitize(f"<ol>{''.join(items)}</ol>") if items else ""
