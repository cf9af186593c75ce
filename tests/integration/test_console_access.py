"""Getting into the operator console, as an owner and as an attacker would: one-time links from the
chat, sessions in Redis, CSRF on every change, the headers of every page. Flask's test client against a
real Redis; the chat through the webhook with the loopback fakes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from bot import texts
from bot.console.auth import COOKIE, CSRF_FIELD
from bot.store.console import LOGIN_TTL, SESSION_TTL, ConsoleStore
from testing.console import csrf_in, login, login_path
from testing.pages import PUBLIC_BASE
from tests.conftest import ROOT, Bot

ADMIN = "admin-console"
OTHER_ADMIN = "admin-other"
LINK = re.compile(re.escape(PUBLIC_BASE) + r"(/console/login/[A-Za-z0-9_-]+)")


@pytest.fixture
def console_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(with_worker=False, public_base_url=PUBLIC_BASE, wechat_admin_openids=[ADMIN, OTHER_ADMIN])


@pytest.fixture
def client(console_bot: Bot) -> FlaskClient:
    return console_bot.app.test_client()


def say(bot: Bot, openid: str, text: str) -> str:
    reply = bot.simulator().send_text(openid, text).text
    assert reply is not None
    return reply


def link_from_chat(bot: Bot, openid: str = ADMIN) -> str:
    reply = say(bot, openid, "/console")
    found = LINK.search(reply)
    assert found, reply
    return found.group(1)


def post_routes(app: Flask) -> list[str]:
    """Every rule of the console that takes something other than GET/HEAD (other sections' too), but the
    login's button: it needs no session, the link's one-time token is its secret."""
    rules = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "console.login":
            continue
        if rule.endpoint.startswith("console.") and (rule.methods or set()) - {"GET", "HEAD", "OPTIONS"}:
            path = rule.rule
            for argument in rule.arguments:
                path = path.replace(f"<{argument}>", "x").replace(f"<string:{argument}>", "x")
            path = re.sub(r"<[^>]+>", "x", path)
            rules.append(path)
    return rules


# --- the link -------------------------------------------------------------------------------------
def test_the_chat_link_opens_the_console_once(console_bot: Bot, client: FlaskClient) -> None:
    path = link_from_chat(console_bot)
    token = path.rsplit("/", 1)[1]
    assert len(token) >= 43  # secrets.token_urlsafe(32): 256 bits

    assert client.head(path).status_code == 200  # a link checker's HEAD does not spend it
    for _ in range(2):  # nor does a GET (a link previewer, a URL safety check): a page with a button
        shown = client.get(path)
        assert shown.status_code == 200
        assert f'<form method="post" action="{path}">' in shown.get_data(as_text=True)
        assert shown.headers["Referrer-Policy"] == "no-referrer"
    assert client.get_cookie(COOKIE, path="/console/") is None
    opened = client.post(path)  # the button
    assert opened.status_code == 303
    assert opened.headers["Location"] in ("/console/", "http://localhost/console/")
    cookie = client.get_cookie(COOKIE, path="/console/")
    assert cookie is not None and cookie.http_only and cookie.secure
    set_cookie = opened.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "Secure" in set_cookie and "SameSite=Lax" in set_cookie
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/console/audit").status_code == 200

    other = console_bot.app.test_client()  # the same link again: refused, no cookie
    again = other.post(path)
    assert again.status_code == 403
    assert other.get_cookie(COOKIE, path="/console/") is None
    assert other.get("/console/audit").status_code == 303


def test_an_expired_link_is_refused(console_bot: Bot, client: FlaskClient, redis_client: redis.Redis) -> None:
    past = ConsoleStore(redis_client, clock=lambda: time.time() - LOGIN_TTL - 1)
    token = past.new_login(ADMIN)  # made LOGIN_TTL + 1 seconds ago by its clock
    assert client.post(f"/console/login/{token}").status_code == 403
    assert client.get("/console/audit").status_code == 303


def test_a_link_expires_in_redis_too(
    console_bot: Bot, client: FlaskClient, redis_client: redis.Redis
) -> None:
    path = login_path(console_bot.app, ADMIN)
    (key,) = redis_client.keys("wxbot:console:login:*")
    assert 0 < redis_client.ttl(key) <= LOGIN_TTL
    assert path.rsplit("/", 1)[1] not in key  # stored by its digest only
    redis_client.delete(key)  # what Redis does when the TTL runs out
    assert client.post(path).status_code == 403


def test_a_malformed_or_unknown_token_is_refused(client: FlaskClient) -> None:
    for token in ["x", "A" * 43, "../../etc", "A" * 500]:
        assert client.post(f"/console/login/{token}").status_code in (403, 404)
    for token in ["x", "../../etc", "A" * 500]:  # not even a link's shape: no button either
        assert client.get(f"/console/login/{token}").status_code in (403, 404)
    assert client.get_cookie(COOKIE, path="/console/") is None


def test_a_non_admin_cannot_get_a_link(console_bot: Bot) -> None:
    assert say(console_bot, "stranger", "/console") == texts.UNKNOWN_COMMAND
    assert console_bot.runtime.admin.audit_log() == []


def test_a_link_for_an_openid_that_is_not_admin_opens_nothing(console_bot: Bot, client: FlaskClient) -> None:
    assert client.post(login_path(console_bot.app, "stranger")).status_code == 403
    assert client.get("/console/audit").status_code == 303


# --- sessions -------------------------------------------------------------------------------------
def test_without_a_cookie_every_page_redirects_to_the_welcome_page(
    console_bot: Bot, client: FlaskClient
) -> None:
    pages = [
        rule.rule
        for rule in console_bot.app.url_map.iter_rules()
        if rule.endpoint.startswith("console.")
        and "GET" in (rule.methods or set())
        and rule.endpoint not in ("console.welcome", "console.login_page", "console.static")
    ]
    assert "/console/users" in pages and "/console/settings" in pages
    for page in pages:
        path = re.sub(r"<[^>]+>", "x", page)
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["Location"].endswith("/console/welcome")
    welcome = client.get("/console/welcome")
    assert welcome.status_code == 200
    text = welcome.get_data(as_text=True)
    assert "/console" in text and "make console-link" in text and "管理员" in text


def test_a_forged_session_is_refused(client: FlaskClient) -> None:
    client.set_cookie(COOKIE, "A" * 43, path="/console/")
    response = client.get("/console/settings")
    assert response.status_code == 303 and response.headers["Location"].endswith("/console/welcome")
    assert f"{COOKIE}=;" in response.headers.get("Set-Cookie", "")  # the forged cookie is dropped


def test_an_expired_session_is_refused(
    console_bot: Bot, client: FlaskClient, redis_client: redis.Redis
) -> None:
    past = ConsoleStore(redis_client, clock=lambda: time.time() - SESSION_TTL - 1)
    session_id, _ = past.new_session(ADMIN)
    client.set_cookie(COOKIE, session_id, path="/console/")
    assert client.get("/console/audit").status_code == 303
    fresh, _ = ConsoleStore(redis_client).new_session(ADMIN)
    client.set_cookie(COOKIE, fresh, path="/console/")
    assert client.get("/console/audit").status_code == 200


def test_a_session_lives_twelve_hours_in_redis(
    console_bot: Bot, client: FlaskClient, redis_client: redis.Redis
) -> None:
    login(client, console_bot.app, ADMIN)
    (key,) = redis_client.keys("wxbot:console:session:*")
    assert SESSION_TTL - 60 < redis_client.ttl(key) <= SESSION_TTL == 12 * 3600


def test_console_logout_in_the_chat_ends_every_session_of_that_admin(console_bot: Bot) -> None:
    app = console_bot.app
    phone, desktop, colleague = app.test_client(), app.test_client(), app.test_client()
    login(phone, app, ADMIN)
    login(desktop, app, ADMIN)
    login(colleague, app, OTHER_ADMIN)
    assert texts.CONSOLE_LOGGED_OUT.format(count=2) == say(console_bot, ADMIN, "/console logout")
    assert phone.get("/console/audit").status_code == 303
    assert desktop.get("/console/audit").status_code == 303
    assert colleague.get("/console/audit").status_code == 200


def test_the_logout_button_ends_this_session(console_bot: Bot, client: FlaskClient) -> None:
    csrf = login(client, console_bot.app, ADMIN)
    assert client.post("/console/logout", data={CSRF_FIELD: csrf}).status_code == 303
    assert client.get("/console/audit").status_code == 303


def test_a_session_ends_when_its_admin_is_no_longer_admin(console_bot: Bot, client: FlaskClient) -> None:
    runtime = console_bot.runtime
    say(console_bot, "promoted", "/auth " + runtime.admin.new_code())
    login(client, console_bot.app, "promoted")
    runtime.admin.redis.srem("wxbot:admins", "promoted")  # removed by hand from Redis
    runtime.admin._admins.forget()
    assert client.get("/console/audit").status_code == 303


# --- CSRF -----------------------------------------------------------------------------------------
def test_every_state_changing_route_needs_the_csrf_token(console_bot: Bot, client: FlaskClient) -> None:
    runtime = console_bot.runtime
    csrf = login(client, console_bot.app, ADMIN)
    routes = post_routes(console_bot.app)
    assert "/console/logout" in routes and "/console/settings/x" in routes
    prompt_before = runtime.overrides.system_prompt()
    changes = lambda: [r for r in runtime.admin.audit_log(1000) if r["command"] != "console:login"]  # noqa: E731
    audit_before = changes()
    for path in routes:
        for token in (None, "", "wrong", csrf[:-1] + ("A" if csrf[-1] != "A" else "B")):
            data = {"value": "hacked", "model": "x"} | ({CSRF_FIELD: token} if token is not None else {})
            response = client.post(path, data=data)
            assert response.status_code in (400, 403), (path, token, response.status_code)
    # a token in the wrong session is not this session's
    other_csrf = login(console_bot.app.test_client(), console_bot.app, OTHER_ADMIN)
    for path in routes:
        assert client.post(path, data={CSRF_FIELD: other_csrf, "value": "x"}).status_code == 400
    assert runtime.overrides.system_prompt() == prompt_before
    assert changes() == audit_before
    assert client.get("/console/audit").status_code == 200  # still signed in: nothing happened


def test_the_csrf_header_works_and_the_token_changes_per_session(
    console_bot: Bot, client: FlaskClient
) -> None:
    csrf = login(client, console_bot.app, ADMIN)
    response = client.post(
        "/console/settings/daily_quota", data={"value": "7"}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 303
    assert console_bot.runtime.overrides.daily_quota() == 7
    assert login(console_bot.app.test_client(), console_bot.app, ADMIN) != csrf


def test_a_post_without_a_session_is_refused(console_bot: Bot, client: FlaskClient) -> None:
    for path in post_routes(console_bot.app):
        assert client.post(path, data={CSRF_FIELD: "x"}).status_code == 403


# --- headers --------------------------------------------------------------------------------------
def test_pages_carry_the_security_headers(console_bot: Bot, client: FlaskClient) -> None:
    login(client, console_bot.app, ADMIN)
    for path in ("/console/welcome", "/console/audit", "/console/settings", "/console/users"):
        response = client.get(path)
        assert response.status_code == 200, path
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
        assert headers["Cache-Control"] == "no-store"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "noindex" in headers["X-Robots-Tag"]
        html = response.get_data(as_text=True)
        assert "<script>" not in html and " style=" not in html and " on" + "click" not in html
    assert csrf_in(client.get("/console/audit").get_data(as_text=True))


def test_a_login_is_audited(console_bot: Bot, client: FlaskClient) -> None:
    login(client, console_bot.app, ADMIN)
    (record,) = [r for r in console_bot.runtime.admin.audit_log() if r["command"] == "console:login"]
    assert record["admin"] == ADMIN


# --- make console-link ----------------------------------------------------------------------------
def console_link(
    base_config: dict[str, Any], *args: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {k.upper(): str(v) for k, v in base_config.items()} | {k.upper(): v for k, v in settings.items()}
    return subprocess.run(
        [sys.executable, "-m", "bot.ops.console_link", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_make_console_link_prints_a_link_that_opens_the_console(
    console_bot: Bot, client: FlaskClient, base_config: dict[str, Any]
) -> None:
    result = console_link(
        base_config, public_base_url=PUBLIC_BASE, wechat_admin_openids=f"{ADMIN},{OTHER_ADMIN}"
    )
    assert result.returncode == 0, result.stderr
    found = LINK.search(result.stdout)
    assert found and ADMIN in result.stdout
    assert client.get(found.group(1)).status_code == 200  # its page, whose button signs in
    assert client.post(found.group(1)).status_code == 303
    assert client.get("/console/audit").status_code == 200


def test_make_console_link_names_what_is_missing(base_config: dict[str, Any]) -> None:
    unset = console_link(base_config, wechat_admin_openids=ADMIN)
    assert (
        unset.returncode == 1 and "PUBLIC_BASE_URL" in unset.stderr and "/console/login/" not in unset.stdout
    )
    stranger = console_link(base_config, "stranger", public_base_url=PUBLIC_BASE, wechat_admin_openids=ADMIN)
    assert stranger.returncode == 1 and "stranger is not an admin" in stranger.stderr
    nobody = console_link(base_config, public_base_url=PUBLIC_BASE)
    assert nobody.returncode == 1 and "WECHAT_ADMIN_OPENIDS" in nobody.stderr
