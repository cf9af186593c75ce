"""Helpers for tests of the operator console (/console/, registered when PUBLIC_BASE_URL is set).

    client = app.test_client()
    csrf = login(client, app, "admin-openid")          # the openid must be an admin (WECHAT_ADMIN_OPENIDS)
    client.post("/console/settings", data={"csrf_token": csrf, ...})

`login` gets a link the real way (the store's one-time token, as `/console` in the chat makes it),
opens it, presses its button (a POST to the same address: opening the link spends nothing), and returns
the session's CSRF token read from a page. It works with Flask's test client and
with a `requests.Session` on a served bot (pass `base_url`, e.g. "http://127.0.0.1:PORT"). The cookie is
`Secure` when PUBLIC_BASE_URL is https: Flask's test client sends it anyway, `requests` only over https,
so a bot served on plain loopback for `requests` gets an http PUBLIC_BASE_URL (its own address).
"""

from __future__ import annotations

import re
from typing import Any

import requests
from flask import Flask
from flask.testing import FlaskClient

#: the meta element every signed-in page carries
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
#: a page of the console that exists whatever sections are installed
SIGNED_IN_PAGE = "/console/audit"


def runtime_of(runtime_or_app: Any) -> Any:
    """The Runtime of an app built by create_app, or the Runtime itself."""
    if isinstance(runtime_or_app, Flask):
        return runtime_or_app.extensions["wxbot"]["runtime"]
    return runtime_or_app


def login_path(runtime_or_app: Any, openid: str) -> str:
    """A fresh one-time login path for `openid`, as `/console` in the chat makes it."""
    token = runtime_of(runtime_or_app).console.new_login(openid)
    return f"/console/login/{token}"


def csrf_in(html: str) -> str:
    found = CSRF_META.search(html)
    assert found, "the page carries no CSRF token (not signed in?)"
    return found.group(1)


def login(
    client: FlaskClient | requests.Session, runtime_or_app: Any, openid: str, base_url: str = ""
) -> str:
    """Sign `client` in as `openid` through a one-time link; the CSRF token for its posts."""
    path = login_path(runtime_or_app, openid)
    if isinstance(client, requests.Session):
        shown = client.get(base_url + path, allow_redirects=False, timeout=10)
        assert shown.status_code == 200 and f'action="{path}"' in shown.text, shown.status_code
        opened = client.post(base_url + path, allow_redirects=False, timeout=10)
        assert opened.status_code == 303, opened.status_code
        page = client.get(base_url + SIGNED_IN_PAGE, allow_redirects=False, timeout=10)
        assert page.status_code == 200, page.status_code
        return csrf_in(page.text)
    shown_here = client.get(path)
    assert shown_here.status_code == 200 and f'action="{path}"' in shown_here.get_data(as_text=True)
    opened_here = client.post(path)
    assert opened_here.status_code == 303, opened_here.status_code
    page_here = client.get(SIGNED_IN_PAGE)
    assert page_here.status_code == 200, page_here.status_code
    return csrf_in(page_here.get_data(as_text=True))
