"""The console's pages for running the bot: conversations, run-time settings, the audit log and the
undelivered answers.

    GET  /console/users                      recent followers (last message, message count); ?openid=…
                                             opens that follower's page; ?before=…&id=… the next page
    GET  /console/users/<openid>             one follower: conversation, undelivered answers, actions
    POST /console/users/<openid>/ban|unban|reset
    GET  /console/settings                   the run-time overrides, each with its form
    POST /console/settings/<name>            change one (`clear=1`: back to the environment's value)
    GET  /console/audit                      chat commands and console changes, newest first
    GET  /console/undelivered                answers that could not reach their follower

Every change is audited as `console:<action>` with the admin's openid (auth.audit). With
CONSOLE_HIDE_CONTENT the pages show no message content: neither conversations nor questions.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as BaseResponse

import bot.console.settings_form as settings_form
from bot.console.auth import allow_upload, audit
from bot.runtime import Runtime
from bot.store.stats import Place

#: followers per page of the list, records per page of the logs
PAGE_SIZE = 50
#: an openid as WeChat makes them (28 characters of letters, digits, - and _), with room for others
OPENID_MAX = 64
#: undelivered records searched for one follower's (the list keeps UNDELIVERED_KEEP, newest first)
UNDELIVERED_SCAN = 1000
#: records shown by the audit and undelivered pages (the newest)
AUDIT_SHOWN = 200


def register(bp: Blueprint, runtime: Runtime) -> None:
    """Add the conversations, settings, audit and undelivered pages to the console."""
    settings = runtime.settings
    hide = settings.console_hide_content

    def when(epoch: float | None) -> str:
        """A time in TIMEZONE, as the operator reads it."""
        if not epoch:
            return ""
        return datetime.fromtimestamp(float(epoch), settings.zone).strftime("%Y-%m-%d %H:%M:%S")

    def page(template: str, **context: Any) -> Response:
        html = render_template(template, when=when, hide=hide, **context)
        return Response(html, mimetype="text/html")

    def checked(openid: str) -> str:
        if not openid or len(openid) > OPENID_MAX or not openid.isprintable():
            abort(404)
        return openid

    @bp.get("/users")
    def conversations() -> BaseResponse:
        if wanted := request.args.get("openid", "").strip():  # the lookup box: straight to that follower
            return redirect(url_for("console.conversations_user", openid=checked(wanted)), 303)
        place = list_place(request.args)
        found = runtime.stats.followers(PAGE_SIZE + 1, place)  # one more: is there a next page?
        shown = found[:PAGE_SIZE]
        rows = [
            {
                "openid": openid,
                "at": at,
                "count": count,
                "banned": runtime.admin.is_banned(openid),
                "admin": runtime.admin.is_admin(openid),
            }
            for openid, at, count in shown
        ]
        more = {"before": repr(shown[-1][1]), "id": shown[-1][0]} if len(found) > PAGE_SIZE else None
        total = runtime.stats.followers_count()
        return page("console/users.html", rows=rows, later=place is not None, more=more, total=total)

    @bp.get("/users/<openid>")
    def conversations_user(openid: str) -> Response:
        checked(openid)
        undelivered = [
            record
            for record in runtime.metrics.undelivered_records(UNDELIVERED_SCAN)
            if record.get("openid") == openid
        ]
        return page(
            "console/user.html",
            openid=openid,
            seen=runtime.stats.follower(openid),
            messages=[] if hide else runtime.history.messages(openid),
            undelivered=undelivered,
            banned=runtime.admin.is_banned(openid),
            is_admin=runtime.admin.is_admin(openid),
            done=request.args.get("done", ""),
        )

    @bp.post("/users/<openid>/<action>")
    def conversations_action(openid: str, action: str) -> BaseResponse:
        checked(openid)
        if action == "ban":
            runtime.admin.ban(openid)
        elif action == "unban":
            runtime.admin.unban(openid)
        elif action == "reset":
            runtime.reset_conversation(openid)
        else:
            abort(404)
        audit(runtime, action, openid)
        return redirect(url_for("console.conversations_user", openid=openid, done=action), 303)

    @bp.get("/settings", endpoint="settings")
    def settings_page() -> Response:
        return page(
            "console/settings.html", fields=settings_form.current(runtime), done=request.args.get("done", "")
        )

    @bp.post("/settings/<name>")
    @allow_upload(settings_form.FORM_MAX_BYTES)
    def settings_change(name: str) -> BaseResponse:
        if name not in settings_form.FIELDS:
            abort(404)
        if request.form.get("clear"):
            runtime.overrides.clear(name)
            audit(runtime, f"settings.{name}", "back to the environment's value")
            return redirect(url_for("console.settings", done=name), 303)
        error, detail = settings_form.apply(runtime, name, request.form)
        if error:
            html = render_template(
                "console/settings.html",
                when=when,
                hide=hide,
                fields=settings_form.as_submitted(settings_form.current(runtime), name, request.form),
                error=error,
                failed=name,
                done="",
            )
            return Response(html, status=400, mimetype="text/html")
        audit(runtime, f"settings.{name}", detail)
        return redirect(url_for("console.settings", done=name), 303)

    @bp.get("/audit", endpoint="audit")
    def audit_page() -> Response:
        return page("console/audit.html", records=runtime.admin.audit_log(AUDIT_SHOWN))

    @bp.get("/undelivered")
    def undelivered() -> Response:
        return page("console/undelivered.html", records=runtime.metrics.undelivered_records(AUDIT_SHOWN))


def list_place(args: MultiDict[str, str]) -> Place | None:
    """Where a later page of the followers' list starts: after the follower `id` whose last message was
    at `before` (an openid and a time, not an offset: followers who write move to the top, and an
    offset then showed some twice and skipped others). None: the newest, also for a place that is no
    time."""
    try:
        at = float(args.get("before", ""))
    except ValueError:
        return None
    return (at, args.get("id", "")) if math.isfinite(at) else None
