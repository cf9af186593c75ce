"""The baseline: a bare Flask app served exactly like the bot (same gunicorn config, same port).

Its one POST route answers `success` without reading anything, so the ratio webhook/bare shows
what the bot's own work (signature check, XML, Redis, reply) costs on top of Flask + gunicorn.
"""

from __future__ import annotations

from flask import Flask, Response


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/wechat")
    def wechat() -> Response:
        return Response("success", content_type="text/plain; charset=utf-8")

    return app
