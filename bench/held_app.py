"""The together case's baseline: a bare Flask app that holds each request until a notice, served
exactly like the bot (same gunicorn config).

`POST /wechat?openid=…` waits for a `held:<openid>` notice on Redis pub/sub — one listener thread per
process waking the requests it holds, the way the bot's waiter does (bot/delivery/waiter.py) — then
answers a fixed passive reply. Nothing else: no signature, no store, no job, no script. The delay from
the bench's notices to the replies read is what Flask + gunicorn + pub/sub alone cost for that many
replies at once on this machine: the floor under the bot's own figure, measured in the same run.
"""

from __future__ import annotations

import os
import threading
import time

import redis
from flask import Flask, Response, request

#: the notices' channels; none of the bot's own
PREFIX = "held:"
#: the bench reads how many requests are held from this key (each counted once it waits)
HELD = "held:count"
#: a request not released within this long is answered `success` (the bench then reports it)
HOLD_SECONDS = 10.0
REPLY = (
    "<xml><ToUserName><![CDATA[{openid}]]></ToUserName><FromUserName><![CDATA[gh_bench]]></FromUserName>"
    "<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[held {openid}]]></Content></xml>"
)


class Holder:
    """The requests held in this process, by openid, and the listener that releases them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(url)
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.pid = 0
        self.subscribed = threading.Event()

    def hold(self, openid: str) -> bool:
        """Wait for `openid`'s notice; whether it came."""
        self._ensure_listener()
        event = threading.Event()
        with self.lock:
            self.events[openid] = event
        self.redis.incr(HELD)
        try:
            return event.wait(HOLD_SECONDS)
        finally:
            with self.lock:
                self.events.pop(openid, None)

    def _ensure_listener(self) -> None:
        """Every request waits until the process's listener is subscribed (Redis confirmed it)."""
        with self.lock:
            if self.pid != os.getpid():  # gunicorn forks its workers after the app is made
                self.pid = os.getpid()
                self.subscribed = threading.Event()
                threading.Thread(target=self._listen, name="held-listener", daemon=True).start()
            subscribed = self.subscribed
        subscribed.wait(5)

    def _listen(self) -> None:
        pubsub = redis.Redis.from_url(self.url).pubsub()
        pubsub.psubscribe(PREFIX + "*")
        while (message := pubsub.get_message(timeout=1.0)) is None or message["type"] != "psubscribe":
            pass
        self.subscribed.set()
        while True:
            message = pubsub.get_message(timeout=1.0)
            if message is None or message["type"] != "pmessage":
                continue
            with self.lock:
                event = self.events.get(message["channel"].decode()[len(PREFIX) :])
            if event is not None:
                event.set()


def create_app() -> Flask:
    app = Flask(__name__)
    holder = Holder(os.environ["REDIS_URL"])

    @app.post("/wechat")
    def wechat() -> Response:
        openid = request.args.get("openid", "")
        if not holder.hold(openid):
            return Response("success", content_type="text/plain; charset=utf-8")
        body = REPLY.format(openid=openid, now=int(time.time()))
        return Response(body, content_type="application/xml; charset=utf-8")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", content_type="text/plain; charset=utf-8")

    return app
