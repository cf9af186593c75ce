"""Flask adapter: `create_app()` builds everything; the views only translate HTTP.

Production: `gunicorn -c deploy/gunicorn.conf.py 'app:create_app()'`.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from bot.config import load_settings
from bot.delivery import PassiveDelivery
from bot.jobs import Jobs
from bot.logs import configure_logging
from bot.protocol import WeChatProtocol
from bot.services import Services, make_redis
from bot.waiter import ReadyWaiter
from bot.webhook import Inbound, Webhook


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; `config` overrides environment settings (lower-case names, e.g. wechat_token)."""
    settings = load_settings(**(config or {}))
    configure_logging(settings)
    services = Services(settings)
    jobs = Jobs(services)
    waiter = ReadyWaiter(make_redis(settings, socket_timeout=None))
    delivery = PassiveDelivery(settings, services.answers, services.pushes, waiter)
    webhook = Webhook(services, jobs, WeChatProtocol(settings), delivery)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.wechat_max_body_bytes
    app.extensions["wxbot"] = {
        "settings": settings,
        "services": services,
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
            services.redis.ping()
        except redis.exceptions.RedisError as exc:
            return Response(f"redis: {exc}", status=503, content_type="text/plain")
        return Response("ok", content_type="text/plain")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        """413 for large bodies, 405, 404…: a short text, never an HTML page."""
        return Response(exc.name, status=exc.code or 400, content_type="text/plain")

    return app
