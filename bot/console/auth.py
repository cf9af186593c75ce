"""Who may use the console, and how every request of it is checked.

    GET  /console/welcome          how to get in (public)
    GET  /console/login/<token>    a one-time link from `/console` in the chat or `make console-link`:
                                   a page with one button, which POSTs to the same address
    POST /console/login/<token>    spends the link and signs this browser in (a GET never spends it: a
                                   link previewer or a URL safety check that fetches the link leaves it
                                   valid for the admin)
    POST /console/logout           ends this browser's session (the chat's `/console logout` ends all)

Every other route of the blueprint needs a live session of an admin (`g.console_admin` is their
openid): without one a GET is redirected to the welcome page and anything else is refused. Every
request other than GET and HEAD must carry the session's CSRF token (form field `csrf_token`, or the
header `X-CSRF-Token`), compared in constant time: without it the answer is 400 and nothing changes.
Every answer under /console/ (its errors too, the routing's 404 and 405 included) is sent with a strict
Content-Security-Policy (no inline script or style, nothing from other sites, no framing), no referrer,
noindex and `no-store`; a refusal inside the console is a page that says what to do (error.html).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, url_for
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response as BaseResponse

from bot.config import Settings
from bot.headers import security_headers
from bot.runtime import Runtime
from bot.store.console import SESSION_TTL

#: the session cookie (path /console/: the answer pages and the webhook never see it)
COOKIE = "wxconsole"
COOKIE_PATH = "/console/"
#: a login token or session id as `secrets.token_urlsafe(32)` makes them
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
#: the routes open without a session
PUBLIC = {"console.welcome", "console.login", "console.login_page", "console.static"}
#: methods that never change anything (no CSRF token needed); any other method needs one
SAFE_METHODS = {"GET", "HEAD"}
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
#: the description of a request refused for its CSRF token (the error page explains it)
CSRF_REFUSED = "CSRF token missing or wrong"

#: inline SVG (charts) is allowed as markup; style attributes and <script> inside a page are not
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = security_headers(CSP)

View = TypeVar("View", bound=Callable[..., Any])


def allow_upload(max_bytes: int) -> Callable[[View], View]:
    """Mark a POST view that takes a larger body than the webhook's limit (WECHAT_MAX_BODY_BYTES,
    the app's MAX_CONTENT_LENGTH): the CSRF check sets this limit on the request before the form is
    read (by the check, or by the view when the token came as a header)."""

    def mark(view: View) -> View:
        view.console_max_bytes = max_bytes  # type: ignore[attr-defined]
        return view

    return mark


def audit(runtime: Runtime, action: str, detail: str) -> None:
    """Write a console change to the audit log of chat commands, as `console:<action>` by this admin."""
    runtime.admin.audit(g.console_admin, f"console:{action}", detail)


def endpoint_url(endpoint: str, fallback: str, **values: Any) -> str:
    """`url_for`, or `fallback` while a section's endpoint does not exist (sections are added apart)."""
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return fallback


def csrf_field() -> Markup:
    """The hidden input every form of the console carries (a Jinja global of the console's pages)."""
    token = getattr(g, "console_csrf", "")
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(token))


def install(bp: Blueprint, settings: Settings, runtime: Runtime) -> None:
    """The checks of every request, the security headers, and the welcome/login/logout routes."""
    https = settings.public_base_url.startswith("https://")

    @bp.before_request
    def guard() -> BaseResponse | None:
        g.console_admin, g.console_csrf = "", ""
        if request.endpoint in PUBLIC:
            return None
        session = runtime.console.session(request.cookies.get(COOKIE, ""))
        if session is not None and not runtime.admin.is_admin(session.openid):
            runtime.console.end_all(session.openid)  # no longer an admin: no session of theirs lives
            session = None
        if session is None:
            if request.method in SAFE_METHODS:
                return forget(redirect(url_for("console.welcome"), 303))
            abort(403)
        if request.method not in SAFE_METHODS and not csrf_valid(session.csrf):
            abort(400, CSRF_REFUSED)
        g.console_admin, g.console_csrf = session.openid, session.csrf
        return None

    @bp.after_app_request  # app-wide: the routing's 404 and 405 under /console/ belong to no blueprint
    def secured(response: Response) -> Response:
        if not in_console():
            return response
        response.headers.update(SECURITY_HEADERS)
        if request.endpoint == "console.static":
            response.headers["Cache-Control"] = "private, max-age=3600"
        else:
            response.headers["Cache-Control"] = "no-store"
        return response

    @bp.context_processor
    def helpers() -> dict[str, Any]:
        return {"csrf_field": csrf_field, "endpoint_url": endpoint_url, "admin": g.get("console_admin", "")}

    @bp.get("/welcome")
    def welcome() -> Response:
        return Response(render_template("console/welcome.html", failed=False), mimetype="text/html")

    @bp.get("/login/<token>")
    def login_page(token: str) -> BaseResponse:
        """The link opened: a button that signs in. Nothing is spent here (nor by a HEAD)."""
        if not SECRET_PATTERN.fullmatch(token):
            return failed_login()
        html = render_template("console/login.html", action=url_for("console.login", token=token))
        return Response(html, mimetype="text/html")

    @bp.post("/login/<token>")
    def login(token: str) -> BaseResponse:
        openid = runtime.console.redeem_login(token) if SECRET_PATTERN.fullmatch(token) else None
        if openid is None or not runtime.admin.is_admin(openid):
            return failed_login()
        if earlier := request.cookies.get(COOKIE, ""):  # this browser's earlier session ends: one at a time
            runtime.console.end_session(earlier)
        session_id, _ = runtime.console.new_session(openid)
        g.console_admin = openid
        audit(runtime, "login", "opened a login link")
        # straight on to the console: the link leaves the address bar (and any later Referer)
        response = redirect(endpoint_url("console.overview", "/console/"), 303)
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=SESSION_TTL,
            path=COOKIE_PATH,
            secure=https or request.is_secure,
            httponly=True,
            samesite="Lax",
        )
        return response

    def failed_login() -> BaseResponse:
        html = render_template("console/welcome.html", failed=True)
        return forget(Response(html, status=403, mimetype="text/html"))

    @bp.errorhandler(HTTPException)
    def refused(exc: HTTPException) -> BaseResponse:
        """A refusal the admin can act on (an old tab's CSRF token, no session, a missing page), as a
        page of the console; the app's handler only says the status's name."""
        if exc.code is None or exc.code < 400:
            return exc.get_response()
        reason = "csrf" if exc.description == CSRF_REFUSED else ""
        html = render_template("console/error.html", code=exc.code, reason=reason)
        return Response(html, status=exc.code, mimetype="text/html")

    @bp.post("/logout")
    def logout() -> BaseResponse:
        runtime.console.end_session(request.cookies.get(COOKIE, ""))
        audit(runtime, "logout", "this browser")
        return forget(redirect(url_for("console.welcome"), 303))


def csrf_valid(expected: str) -> bool:
    """The request's CSRF token (header first, then the form) is the session's."""
    view = current_app.view_functions.get(request.endpoint or "")
    limit = getattr(view, "console_max_bytes", None)
    if limit is not None:  # an upload: its form is read with its own limit (here or by the view)
        request.max_content_length = limit
    given = request.headers.get(CSRF_HEADER, "")
    if not given:
        given = request.form.get(CSRF_FIELD, "")
    return bool(expected) and hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def in_console() -> bool:
    """This request is the console's: one of its routes, or any other address under /console/."""
    return request.blueprint == "console" or (request.path + "/").startswith(COOKIE_PATH)


def forget(response: BaseResponse) -> BaseResponse:
    """Drop the session cookie (a forged, ended or expired one is not sent again)."""
    if request.cookies.get(COOKIE):
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response
