"""Helpers for tests of the answer page (PUBLIC_BASE_URL): find the page link in a chat reply, open
the page or its live state on the bot served on loopback, as a follower's browser would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import requests

#: PUBLIC_BASE_URL in the tests: links carry it; requests go to the loopback server instead
PUBLIC_BASE = "https://bot.example.com"
LINK = re.compile(re.escape(PUBLIC_BASE) + r"/a/([A-Za-z0-9_-]+)")


def token_in(text: str | None) -> str | None:
    """The page token of the first page link in a chat reply, if any."""
    found = LINK.search(text or "")
    return found.group(1) if found else None


@dataclass
class PageReader:
    """Opens answer pages on the bot at `server` (e.g. http://127.0.0.1:PORT)."""

    server: str

    def url(self, token: str) -> str:
        return f"{self.server}/a/{token}"

    def page(self, token: str) -> requests.Response:
        return requests.get(self.url(token), timeout=10)

    def live(self, token: str, version: int | None = None) -> requests.Response:
        params = {"v": str(version)} if version is not None else {}
        return requests.get(self.url(token) + "/live", params=params, timeout=10)

    def state(self, token: str) -> dict[str, Any]:
        response = self.live(token)
        response.raise_for_status()
        data = response.json()
        assert isinstance(data, dict)
        return data


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {name: value or "" for name, value in attrs}))


def elements(html: str) -> list[tuple[str, dict[str, str]]]:
    """Every element of an HTML document or fragment, as a browser's parser sees it: (tag, attributes)."""
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser.found
