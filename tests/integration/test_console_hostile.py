"""The operator console against hostile input, as an attacker would try it: junk to every route (never a
500), the security headers on every answer under /console/ (errors of the routing too), a login link
that never reaches a log line, a refusal that says what went wrong, a second login that ends the
browser's first session, one link opened at once by many, content from followers, documents and the
audit log always escaped, the settings' stated limits kept and a form without its value changing
nothing. Flask's test client (and the served app for the log lines) against a real Redis."""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from flask.testing import FlaskClient

from bot.console.auth import COOKIE, CSRF_FIELD
from bot.knowledge.documents import Block, Document
from bot.logs import console_handler
from testing.console import login, login_path
from testing.pages import PUBLIC_BASE
from tests.conftest import Bot

ADMIN = "admin-console"
#: what a follower, a document or a log record could carry to break out of the page
PAYLOADS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "javascript:alert(3)")


@pytest.fixture
def console_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(
        with_worker=False,
        public_base_url=PUBLIC_BASE,
        wechat_admin_openids=[ADMIN],
        allowed_models=["gpt-4o"],
    )


@pytest.fixture
def client(console_bot: Bot) -> FlaskClient:
    return console_bot.app.test_client()


@pytest.fixture
def csrf(console_bot: Bot, client: FlaskClient) -> str:
    return login(client, console_bot.app, ADMIN)


# --- junk never makes a 500 --------------------------------------------------------------------------
JUNK_VALUES = ["", "-1", "NaN", "inf", "1e9", "１２", "٣", "0x10", "99999999999", "\x00", "x" * 100_000]


def test_junk_to_every_post_route_is_refused_with_a_4xx_never_a_500(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    runtime = console_bot.runtime
    for name in ("daily_quota", "rate_per_minute"):
        for value in JUNK_VALUES:
            response = client.post(f"/console/settings/{name}", data={CSRF_FIELD: csrf, "value": value})
            assert response.status_code in (400, 413), (name, value[:20], response.status_code)
    assert runtime.overrides.overridden() == set()  # not one of them was written
    too_long = {CSRF_FIELD: csrf, "value": "长" * 4001}
    assert client.post("/console/settings/system_prompt", data=too_long).status_code == 400
    unknown = {CSRF_FIELD: csrf, "model": ["no-such-model"]}
    assert client.post("/console/settings/allowed_models", data=unknown).status_code == 400
    raw = b"%s=%s&value=\xff\xfe\x80&id=\xff" % (CSRF_FIELD.encode(), csrf.encode())  # not UTF-8
    for path in ("/console/settings/system_prompt", "/console/users/x/ban", "/console/kb/remove"):
        response = client.post(path, data=raw, content_type="application/x-www-form-urlencoded")
        assert 400 <= response.status_code < 500, (path, response.status_code)
    for name in ("../../etc/passwd", "..", "x.exe", "\\..\\x.md", "", "../a\x00b.txt"):
        response = client.post(
            "/console/kb/upload",
            data={CSRF_FIELD: csrf, "file": (io.BytesIO(b"some text"), name)},
            content_type="multipart/form-data",
        )
        assert response.status_code in (303, 400, 415), (name, response.status_code)
    # the two documents are kept under their names without a directory or the NUL
    assert sorted(record.name for record in runtime.knowledge.documents()) == ["a b.txt", "x.md"]


@pytest.mark.parametrize(
    "path",
    [
        "/console/users?before=99999999999999999999999&id=x",
        "/console/users?before=-5",
        "/console/users?before=abc&id=%ff",
        "/console/users?before=nan",
        "/console/users?before=1e400&id=" + "x" * 5000,
        "/console/users/%ff",
        "/console/users?openid=a%0d%0aSet-Cookie:x=1",
        "/console/kb?q=%00%ff",
        "/console/kb?done=removed&doc=%3Cx%3E",
        "/console/settings?done=%3Cb%3E",
    ],
)
def test_odd_query_strings_are_never_a_500(client: FlaskClient, csrf: str, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (200, 404), response.status_code
    assert "<x>" not in response.get_data(as_text=True) and "<b>" not in response.get_data(as_text=True)


# --- headers on every answer under /console/ ---------------------------------------------------------
def test_routing_errors_inside_the_console_carry_the_security_headers(client: FlaskClient) -> None:
    def check(method: str, path: str, status: int) -> None:
        response = client.open(path, method=method)
        assert response.status_code == status, (method, path, response.status_code)
        headers = response.headers
        assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", ""), (method, path)
        assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"

    check("GET", "/console/no-such-page", 404)  # no session: the routing's 404 comes first
    check("PUT", "/console/login/" + "A" * 43, 405)
    check("POST", "/console/login/" + "A" * 43, 403)  # a token no link has
    login(client, client.application, ADMIN)
    check("GET", "/console/no-such-page", 404)
    check("GET", "/console/logout", 405)
    check("PUT", "/console/audit", 405)
    assert "Content-Security-Policy" not in client.get("/livez").headers  # the rest of the app as it was


# --- a refusal says why -----------------------------------------------------------------------------
def test_a_refused_post_says_why_and_how_to_go_on(console_bot: Bot, client: FlaskClient, csrf: str) -> None:
    wrong = client.post("/console/settings/daily_quota", data={CSRF_FIELD: "wrong", "value": "3"})
    assert wrong.status_code == 400
    page = wrong.get_data(as_text=True)
    assert "CSRF" in page and "刷新" in page  # an old tab after a new login: reload it
    assert "Content-Security-Policy" in wrong.headers
    stranger = console_bot.app.test_client().post("/console/settings/daily_quota", data={"value": "3"})
    assert stranger.status_code == 403 and "/console" in stranger.get_data(as_text=True)
    assert console_bot.runtime.overrides.overridden() == set()


# --- sessions -----------------------------------------------------------------------------------------
def test_a_new_login_in_a_browser_ends_that_browsers_previous_session(
    console_bot: Bot, client: FlaskClient
) -> None:
    login(client, console_bot.app, ADMIN)
    first = client.get_cookie(COOKIE, path="/console/")
    assert first is not None
    copy = console_bot.app.test_client()  # someone who took the first cookie
    copy.set_cookie(COOKIE, first.value, path="/console/")
    assert copy.get("/console/audit").status_code == 200
    assert client.post(login_path(console_bot.app, ADMIN)).status_code == 303
    assert copy.get("/console/audit").status_code == 303
    assert client.get("/console/audit").status_code == 200


# --- the login link in the logs ------------------------------------------------------------------------
def test_a_login_link_never_reaches_a_log_line(console_bot: Bot) -> None:
    (handler,) = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    lines = io.StringIO()
    previous = handler.setStream(lines)  # the handler every process logs through (bot/logs.py)
    path = login_path(console_bot.app, ADMIN)
    token = path.rsplit("/", 1)[1]
    base = f"http://127.0.0.1:{console_bot.server.server_port}"
    try:  # werkzeug logs a request's line before it answers: every line is in by the answer
        # a link checker's HEAD and a previewer's GET leave the link valid: their lines must not carry it
        assert requests.head(base + path, timeout=10).status_code == 200
        with requests.Session() as browser:
            assert browser.get(base + path, allow_redirects=False, timeout=10).status_code == 200
            assert browser.post(base + path, allow_redirects=False, timeout=10).status_code == 303
    finally:
        handler.setStream(previous or sys.stderr)
    logged = lines.getvalue()
    for method in ("HEAD", "GET", "POST"):  # the access lines were written
        assert re.search(rf"{method} /console/login/\S* HTTP", logged), method
    assert token not in logged


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_gunicorns_access_line_loses_the_token_too(log_format: str) -> None:
    """gunicorn's access log (deploy/gunicorn.conf.py) goes through the same handler, its fields as a
    mapping; a chat reply logged at DEBUG by a library carries the link in quotes."""
    handler, lines = console_handler(log_format), io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(lines)
    token = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcde"
    access = {"h": "10.0.0.1", "m": "HEAD", "U": f"/console/login/{token}", "s": "200"}
    for name, message, args in (
        ("gunicorn.access", '%(h)s "%(m)s %(U)s" %(s)s', (access,)),
        ("wechatpy", "Request to WeChat API: %r", ({"content": f"打开 https://x.cn/console/login/{token}"},)),
    ):
        handler.handle(logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None))
    logged = lines.getvalue()
    assert token not in logged and logged.count("/console/login/***") == 2
    assert "10.0.0.1" in logged and "200" in logged  # the rest of the line as it was


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_answer_pages_token_stays_out_of_the_log_and_its_files_paths_stay(log_format: str) -> None:
    """An answer page's link opens the answer: its access lines (the page, its live state) lose the token;
    the page's own files (/a/assets/…) and a file path with an `a` folder are left as they are."""
    handler, lines = console_handler(log_format), io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(lines)
    token = "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2"
    for path in (f"/a/{token}", f"/a/{token}/live", "/a/assets/page.css"):
        access = {"h": "10.0.0.1", "m": "GET", "U": path, "s": "200"}
        message, args = '%(h)s "%(m)s %(U)s" %(s)s', (access,)
        handler.handle(logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, message, args, None))
    note = logging.LogRecord(
        "bot.knowledge", logging.INFO, __file__, 1, "read %s", ("/srv/a/report.pdf",), None
    )
    handler.handle(note)
    logged = lines.getvalue()
    assert token not in logged and logged.count('"GET /a/***') == 2 and "/a/***/live" in logged
    assert "/a/assets/page.css" in logged and "/srv/a/report.pdf" in logged


def test_two_browsers_opening_one_link_at_once_get_one_session(console_bot: Bot) -> None:
    path = login_path(console_bot.app, ADMIN)
    browsers = [console_bot.app.test_client() for _ in range(8)]
    start = threading.Barrier(len(browsers))

    def open_link(browser: FlaskClient) -> int:
        assert browser.get(path).status_code == 200  # the page with the button: nothing spent yet
        start.wait()
        return browser.post(path).status_code  # all eight press it at once

    with ThreadPoolExecutor(len(browsers)) as pool:
        statuses = sorted(pool.map(open_link, browsers))
    assert statuses == [303] + [403] * 7


# --- content is escaped everywhere -------------------------------------------------------------------
def test_content_from_followers_documents_and_logs_is_escaped(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    runtime = console_bot.runtime
    follower = "o6_follower"
    runtime.history.add_turn(follower, PAYLOADS[0], PAYLOADS[1], 1.0)
    runtime.metrics.undelivered("answer-1", follower, PAYLOADS[1])
    runtime.admin.audit(ADMIN, "system", PAYLOADS[0])
    runtime.knowledge.add(
        Document(
            PAYLOADS[1], [Block("正文 " + PAYLOADS[0])], "wechat", "k1", url=PAYLOADS[2], name=PAYLOADS[0]
        )
    )
    for path in (
        f"/console/users/{follower}",
        "/console/undelivered",
        "/console/audit",
        "/console/kb",
        "/console/kb?q=" + "正文",
        "/console/",
    ):
        html = client.get(path).get_data(as_text=True)
        for payload in PAYLOADS[:2]:
            assert payload not in html, (path, payload)
        assert 'href="javascript:' not in html, path


# --- the limits the settings page states are the ones it keeps ---------------------------------------
def test_a_word_list_within_the_stated_limits_is_saved_not_refused_as_too_large(
    console_bot: Bot, client: FlaskClient, csrf: str
) -> None:
    """5,000 words of up to 50 characters, says the page: a Chinese character is 9 bytes in a form
    (%E4%B8%AD), so 3,000 words of 4 characters already were 126 KB, twice the webhook's body limit."""
    words = [f"敏感词{chr(0x4E00 + i)}{chr(0x4E00 + i // 7)}" for i in range(3000)]
    value = "\r\n".join(words)
    response = client.post("/console/settings/sensitive_words", data={CSRF_FIELD: csrf, "value": value})
    assert response.status_code == 303, response.status_code
    assert len(console_bot.runtime.overrides.sensitive_words() or []) == 3000
    by_header = client.post(
        "/console/settings/sensitive_words", data={"value": value[:-1]}, headers={"X-CSRF-Token": csrf}
    )
    assert by_header.status_code == 303, by_header.status_code
    huge = {CSRF_FIELD: csrf, "value": "长" * 1_000_000}  # 9 MB: past any list the page takes
    assert client.post("/console/settings/sensitive_words", data=huge).status_code == 413


def test_a_form_without_its_value_changes_nothing(console_bot: Bot, client: FlaskClient, csrf: str) -> None:
    """A body that is not UTF-8 parses as an empty form: with the token as a header it reached the
    setting as "no value", which emptied the system prompt and the sensitive words."""
    runtime = console_bot.runtime
    for name, value in (("system_prompt", "你是助手。"), ("sensitive_words", "机密")):
        assert (
            client.post(f"/console/settings/{name}", data={CSRF_FIELD: csrf, "value": value}).status_code
            == 303
        )
    before = runtime.overrides.system_prompt(), runtime.overrides.sensitive_words()
    models = list(runtime.models.allowed)
    for name in ("system_prompt", "welcome_text", "sensitive_words", "daily_quota", "allowed_models"):
        not_utf8 = client.post(
            f"/console/settings/{name}",
            data=b"value=\xff\xfe",
            headers={"X-CSRF-Token": csrf},
            content_type="application/x-www-form-urlencoded",
        )
        assert not_utf8.status_code == 400, (name, not_utf8.status_code)
        assert "未保存" in not_utf8.get_data(as_text=True)
        if name != "allowed_models":  # no box ticked is a choice: the default model only
            no_field = client.post(f"/console/settings/{name}", data={CSRF_FIELD: csrf})
            assert no_field.status_code == 400, (name, no_field.status_code)
    assert (runtime.overrides.system_prompt(), runtime.overrides.sensitive_words()) == before
    assert before == ("你是助手。", ["机密"]) and len(models) == 2 and list(runtime.models.allowed) == models
