"""Flask adapter: `create_app()` builds everything; the views only translate HTTP.

Production: `gunicorn -c deploy/gunicorn.conf.py 'app:create_app()'`.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import redis
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from bot.answering.jobs import Jobs
from bot.config import load_settings
from bot.delivery.passive import PassiveDelivery
from bot.delivery.waiter import ReadyWaiter
from bot.logs import configure_logging
from bot.runtime import Runtime, make_redis
from bot.store import keys
from bot.store.metrics import registry
from bot.wechat.protocol import WeChatProtocol
from bot.wechat.webhook import Inbound, Webhook
from handlers.messages import Router


def metrics_allowed(token: str) -> bool:
    """With METRICS_TOKEN: that bearer token. Without: direct loopback requests only (not via a proxy)."""
    if token:
        return hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}")
    proxied = "X-Forwarded-For" in request.headers or "X-Real-IP" in request.headers
    return request.remote_addr in ("127.0.0.1", "::1") and not proxied


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; `config` overrides environment settings (lower-case names, e.g. wechat_token)."""
    settings = load_settings(**(config or {}))
    configure_logging(settings)
    runtime = Runtime(settings)
    jobs = Jobs(runtime)
    waiter = ReadyWaiter(make_redis(settings, socket_timeout=None))
    delivery = PassiveDelivery(settings, runtime.answers, runtime.pushes, waiter, runtime.metrics)
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

    @app.route("/wechat", methods=["GET", "POST"])
    def wechat() -> Response:
        arrived = time.monotonic()
        body = request.get_data(cache=False) if request.method == "POST" else b""
        inbound = Inbound(request.method, request.args.to_dict(), body, arrived)
        out = webhook.handle(inbound)
        return Response(out.body, status=out.status, content_type=out.content_type)

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            runtime.redis.ping()
        except redis.exceptions.RedisError as exc:
            return Response(f"redis: {exc}", status=503, content_type="text/plain")
        return Response("ok", content_type="text/plain")

    @app.get("/metrics")
    def metrics() -> Response:
        if not metrics_allowed(settings.metrics_token):
            return Response("forbidden", status=403, content_type="text/plain")
        body = generate_latest(registry(runtime.redis, keys.JOB_QUEUE))
        return Response(body, content_type=CONTENT_TYPE_LATEST)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        """413 for large bodies, 405, 404…: a short text, never an HTML page."""
        return Response(exc.name, status=exc.code or 400, content_type="text/plain")

    return app
