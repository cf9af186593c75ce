"""LoopbackAdapter: a requests transport adapter that sends the requests for one outside host (say,
WeChat's image CDN) to a loopback fake instead, path and query kept — so that a test exercises the
bot's real host checks with the real host name in the URL, and nothing leaves the machine.

    session.mount("http://mmbiz.qpic.cn/", LoopbackAdapter(fake_wechat.url))
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter


class LoopbackAdapter(HTTPAdapter):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = urlsplit(target)
        #: the URLs this adapter was asked for, before rewriting
        self.asked: list[str] = []

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        url = str(request.url)
        self.asked.append(url)
        parts = urlsplit(url)
        request.url = urlunsplit((self.target.scheme, self.target.netloc, parts.path, parts.query, ""))
        return super().send(request, *args, **kwargs)
