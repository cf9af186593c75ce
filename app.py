"""Flask adapter: `create_app()` builds everything; the views only translate HTTP.

Production: `gunicorn -c deploy/gunicorn.conf.py 'app:create_app()'`.
"""

from __future__ import annotations

import hmac
import logging
import time
from functools import partial
from typing import Any

import redis
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from bot.answering.jobs import Jobs
from bot.config import load_settings
from bot.console import console_blueprint
from bot.delivery.hangup import still_connected
from bot.delivery.passive import PassiveDelivery
from bot.delivery.waiter import ReadyWaiter
from bot.logs import APP_LOGGED, configure_logging
from bot.pages.views import answer_pages
from bot.runtime import Runtime, make_redis
from bot.webhook import Inbound, Webhook
from bot.wechat.protocol import WeChatProtocol
from handlers.router import Router


def metrics_allowed(token: str) -> bool:
    """With METRICS_TOKEN: that bearer token. Without: direct loopback requests only (not via a proxy)."""
    if token:  # as bytes: compare_digest refuses non-ASCII str (a TypeError, which would be a 500)
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogatepass")
        return hmac.compare_digest(given, f"Bearer {token}".encode("utf-8", "surrogatepass"))
    proxied = "X-Forwarded-For" in request.headers or "X-Real-IP" in request.headers
    return request.remote_addr in ("127.0.0.1", "::1") and not proxied


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; `config` overrides environment settings (lower-case names, e.g. wechat_token)."""
    settings = load_settings(**(config or {}))
    configure_logging(settings)
    runtime = Runtime(settings)
    jobs = Jobs(runtime)
    waiter = ReadyWaiter(make_redis(settings, socket_timeout=None))
    links = runtime.page_links if settings.public_base_url else None
    delivery = PassiveDelivery(
        settings, runtime.answers, runtime.pushes, waiter, runtime.metrics, links=links
    )
    webhook = Webhook(runtime, Router(runtime, jobs), WeChatProtocol(settings), delivery)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.wechat_max_body_bytes
    app.extensions["wxbot"] = {
        "settings": settings,
        "runtime": runtime,
        "jobs": jobs,
        "webhook": webhook,
        "waiter": waiter,
    }

    if settings.public_base_url:  # answer pages at /a/<token> (nginx passes /a/ to the bot)
        mask = lambda text: runtime.moderator.mask_markdown(text)  # noqa: E731 (the moderator is built on first use)
        app.register_blueprint(answer_pages(settings, runtime.answers, runtime.pages, mask))
        # the operator console at /console/ (its login links need PUBLIC_BASE_URL too)
        app.register_blueprint(console_blueprint(settings, runtime))

    @app.route("/wechat", methods=["GET", "POST"])
    def wechat() -> Response:
        arrived = time.monotonic()
        body = request.get_data(cache=False) if request.method == "POST" else b""
        # the client's socket (gunicorn's, or the development server's): has WeChat stopped waiting?
        client = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
        connected = partial(still_connected, client)
        inbound = Inbound(request.method, request.args.to_dict(), body, arrived, connected)
        out = webhook.handle(inbound)
        if out.logged:
            request.environ[APP_LOGGED] = True  # gunicorn writes no second line for it
        return Response(out.body, status=out.status, content_type=out.content_type)

    # Health: the answer is a few plain words, never exception text (these may be public via nginx).
    def unhealthy(check: str, reason: str, exc: Exception | None = None) -> Response:
        logging.getLogger(__name__).warning("%s: %s%s", check, reason, f" ({exc!r})" if exc else "")
        return Response(reason, status=503, content_type="text/plain")

    @app.get("/livez")
    def livez() -> Response:
        """Liveness: this web process answers (nothing else is checked)."""
        return Response("ok", content_type="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        """Readiness: Redis answers and a job worker's heartbeat is at most WORKER_HEARTBEAT_TIMEOUT old."""
        try:
            age = runtime.workers.freshest_heartbeat_age()
        except redis.exceptions.RedisError as exc:
            return unhealthy("readyz", "redis: unreachable", exc)
        if age is None:
            return unhealthy("readyz", "workers: no heartbeat")
        if age > settings.worker_heartbeat_timeout:
            return unhealthy("readyz", f"workers: no heartbeat for {age:.0f} s")
        return Response("ok", content_type="text/plain")

    @app.get("/healthz")
    def healthz() -> Response:
        """Kept for existing setups: 200 while Redis answers (/readyz also checks the job workers)."""
        try:
            runtime.workers.ping()
        except redis.exceptions.RedisError as exc:
            return unhealthy("healthz", "redis: unreachable", exc)
        return Response("ok", content_type="text/plain")

    @app.get("/metrics")
    def metrics() -> Response:
        if not metrics_allowed(settings.metrics_token):
            return Response("forbidden", status=403, content_type="text/plain")
        body = generate_latest(runtime.metrics.registry())
        return Response(body, content_type=CONTENT_TYPE_LATEST)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        """413 for large bodies, 405, 404…: a short text, never an HTML page."""
        return Response(exc.name, status=exc.code or 400, content_type="text/plain")

    return app
