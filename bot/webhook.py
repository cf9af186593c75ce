"""The webhook, framework-free: an inbound HTTP request in, the answer for WeChat out.

The Flask view (app.py) only converts to and from these types. Whatever happens here, WeChat
gets a 4xx for requests it would never send, and otherwise a reply, or `success` — never a 5xx for a
push. (A URL check, the GET of 公众号后台, gets 503 while Redis is down: see `_bind_signature`.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import redis
from wechatpy.messages import BaseMessage

from bot import texts
from bot.delivery.passive import PassiveDelivery
from bot.logs import request_id
from bot.replies import image_media_id
from bot.runtime import Runtime
from bot.store.limits import RateTicket
from bot.store.pushes import Arrival, OnFirst, Plan, Planned, dedup_key
from bot.wechat.protocol import ProtocolError, Push, WeChatProtocol

log = logging.getLogger(__name__)

SUCCESS = "success"


class Planner(Protocol):
    """Decides what a new push asks of us (the chat routing of handlers/, injected by app.py)."""

    def __call__(self, message: BaseMessage, push_key: str, ticket: RateTicket | None) -> Plan:
        """The plan of a push, after its arrival (`ticket`: its count against the rate, if taken)."""
        ...

    def ready(self, message: BaseMessage, push_key: str) -> Planned | None:
        """The plan of a push whose reply needs nothing from Redis but its rate verdict, made before
        its arrival (the arrival script saves it: one round trip in all); None for any other push."""
        ...


#: the kinds of message whose first delivery the arrival script counts against the per-minute rate (the
#: only ones a limit can refuse); one that no check uses is taken back off the count after its plan (or,
#: planned before its arrival, not counted)
RATE_COUNTED = ("text", "voice", "image")


@dataclass(frozen=True)
class FirstWork:
    """What the arrival script does on a push's first delivery besides its own work (`OnFirst` parts),
    and which of the parts, if any, counts the push against the rate limit (1-based; 0: none)."""

    parts: list[OnFirst]
    rate: int = 0


@dataclass(frozen=True)
class Inbound:
    method: str
    args: dict[str, str]
    body: bytes
    arrived: float  # monotonic clock
    #: whether the client still waits for the reply (None: the server cannot tell)
    connected: Callable[[], bool] | None = None


@dataclass(frozen=True)
class Outbound:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"
    #: the webhook wrote this request's log line (a push's delivery): the server need not write another
    logged: bool = False


def xml(body: str) -> Outbound:
    return Outbound(200, body, "application/xml; charset=utf-8")


class Webhook:
    def __init__(
        self, runtime: Runtime, planner: Planner, protocol: WeChatProtocol, delivery: PassiveDelivery
    ) -> None:
        self.runtime = runtime
        self.planner = planner
        self.protocol = protocol
        self.delivery = delivery

    def handle(self, inbound: Inbound) -> Outbound:
        try:
            if inbound.method == "GET":
                echo = self.protocol.check_echo(inbound.args)
                if self._bind_signature(inbound) is None:
                    return Outbound(503, "service unavailable: try again")
                return Outbound(200, echo)
            # verified (its signature first: no key for unsigned requests), decrypted and parsed before
            # Redis hears of it; then one round trip binds its signature and counts its delivery (and
            # saves its plan, for a push whose stateless reply was planned here before it)
            push = self.protocol.open(inbound.args, inbound.body)
            key = dedup_key(push.message)
            planned = self._ready(push, key)
            first = self._on_first(push, planned)
            arrival = self._bind_signature(inbound, key, first, planned)
        except ProtocolError as exc:
            log.warning("refused %s /wechat: %s (%s)", inbound.method, exc.reason, exc.status)
            return Outbound(exc.status, exc.reason)
        if arrival is None:  # the push may be a replay: nothing of it runs, the sender reads why
            return xml(self.protocol.render_text(push, texts.SERVICE_DOWN))
        token = request_id.set(new_request_id())
        try:
            return self._answer(
                push, key, arrival, inbound.arrived, self._ticket(first, arrival), inbound.connected
            )
        except Exception:
            log.exception("could not handle a push from %s", push.message.source)
            return xml(self.protocol.render_text(push, texts.SERVICE_DOWN))
        finally:
            request_id.reset(token)

    def _ready(self, push: Push, key: str) -> Planned | None:
        """The push's plan made before its arrival, when its reply is stateless (`Planner.ready`). A
        failure here only means that the push is planned after its arrival, like any other."""
        try:
            return self.planner.ready(push.message, key)
        except redis.exceptions.RedisError:
            return None  # the arrival, next, tells the sender that Redis is down
        except Exception:
            log.exception("could not plan a push from %s before its arrival", push.message.source)
            return None

    def _on_first(self, push: Push, planned: Planned | None) -> FirstWork:
        """What the arrival script does on a push's first delivery besides its own work: for a message
        the user sent the day's statistics and the customer-service window (an event opens no 48-hour
        window and is not counted there; an unsubscribe closes the window), the `messages` metric (events
        too, by kind), and for a chat message its count against the rate limit — unless it was planned
        before its arrival without a check of the rate (nothing to count)."""
        openid = str(push.message.source)
        parts = []
        if push.message.type != "event":
            parts.append(self.runtime.stats.on_arrival(openid))
        elif getattr(push.message, "event", "") == "unsubscribe":
            parts.append(self.runtime.stats.on_unsubscribe(openid))
        parts.append(self.runtime.metrics.on_inc("messages", kind=kind_of(push)))
        if push.message.type in RATE_COUNTED and (planned is None or planned.if_refused is not None):
            parts.append(self.runtime.limits.on_arrival(openid))
            return FirstWork(parts, rate=len(parts))
        return FirstWork(parts)

    def _ticket(self, first: FirstWork, arrival: Arrival) -> RateTicket | None:
        """The rate count the arrival took (a chat message's first delivery), else None."""
        if not first.rate or len(arrival.first) < first.rate:
            return None
        return self.runtime.limits.ticket(first.parts[first.rate - 1], arrival.first[first.rate - 1])

    def _bind_signature(
        self,
        inbound: Inbound,
        push_key: str = "",
        first: FirstWork | None = None,
        planned: Planned | None = None,
    ) -> Arrival | None:
        """The replay guard. A signature covers only token, timestamp and nonce: bind a verified one to
        the first request it came with — method, query and body; the URL check's GET too —, so that a
        leaked query string cannot carry another message (an identical request is a retry) for as long
        as its timestamp is accepted. ProtocolError for a replay. For a push (`push_key`), the same
        round trip counts its delivery and, on the first one, runs `first`'s parts (the daily statistics:
        counted before the plan, so that /stats counts its own push) and saves a `planned` plan.

        None when Redis cannot tell: the request is then refused (fail closed). A push's sender reads
        SERVICE_DOWN and nothing of the push runs — not even when Redis is back a moment later, which
        is when a replay would otherwise get through; the URL check gets 503 (公众号后台 says the URL
        check failed: submit again). Either way WeChat gets no 500.
        """
        args = inbound.args
        timestamp, nonce = args["timestamp"], args["nonce"]
        now = self.protocol.clock()
        until = self.protocol.accepted_until(timestamp)
        try:
            arrival = self.runtime.pushes.bind_signature(
                timestamp,
                nonce,
                request_digest(inbound),
                until,
                now,
                push_key,
                first.parts if first else (),
                planned,
                first.rate if first else 0,
            )
        except redis.exceptions.RedisError as exc:
            log.warning("refused %s /wechat: replay guard unavailable (Redis: %r)", inbound.method, exc)
            return None
        if arrival is None:
            raise ProtocolError(403, "signature already used for another request (replay)")
        return arrival

    def _answer(
        self,
        push: Push,
        key: str,
        arrival: Arrival,
        arrived: float,
        ticket: RateTicket | None,
        connected: Callable[[], bool] | None = None,
    ) -> Outbound:
        openid = str(push.message.source)
        plan = self._plan(push, key, arrival, ticket)
        out = self._respond(push, key, openid, plan, arrival.attempt, arrived, connected)
        self._log(push, key, plan, arrival.attempt, arrived, out)
        # gunicorn's access line is left out only when this line was written: it is INFO, and gunicorn's
        # access logger writes at INFO whatever LOG_LEVEL (deploy/gunicorn.conf.py)
        return replace(out, logged=log.isEnabledFor(logging.INFO))

    def _respond(
        self,
        push: Push,
        key: str,
        openid: str,
        plan: Plan,
        attempt: int,
        arrived: float,
        connected: Callable[[], bool] | None = None,
    ) -> Outbound:
        if plan.kind == "reply":
            return xml(self.protocol.render_text(push, plan.text))
        if plan.kind == "image":
            return xml(self.protocol.render_image(push, plan.media_id))
        if plan.kind == "silent":
            return Outbound(200, SUCCESS)
        if plan.kind == "ask" and plan.delivery == "active":
            text = self.delivery.owed_now(openid, key)
        else:
            text = self.delivery.reply(openid, key, plan, attempt, arrived, connected)
        if text is None:
            return Outbound(200, SUCCESS)
        media_id = image_media_id(text)
        if media_id is not None:
            return xml(self.protocol.render_image(push, media_id))
        return xml(self.protocol.render_text(push, text))

    def _log(self, push: Push, key: str, plan: Plan, attempt: int, arrived: float, out: Outbound) -> None:
        """One line per delivery of a push: who, what, which attempt, what went back, how long."""
        fields = {
            "push": key,
            "openid": str(push.message.source),
            "kind": kind_of(push),
            "attempt": attempt,
            "plan": plan.kind,
            "replied": "xml" if out.content_type.startswith("application/xml") else out.body or "empty",
            "seconds": round(time.monotonic() - arrived, 3),
        }
        if self.runtime.settings.log_message_content:
            fields["content"] = str(getattr(push.message, "content", ""))[:200]
        log.info(" ".join(f"{name}={value}" for name, value in fields.items()), extra=fields)

    def _plan(self, push: Push, key: str, arrival: Arrival, ticket: RateTicket | None) -> Plan:
        """The first delivery decides (or its arrival did, for a push planned before it: no round trip
        here); later ones reuse its decision."""
        if arrival.attempt > 1:
            self.runtime.metrics.inc("duplicates")
            if (plan := arrival.plan or self.runtime.pushes.plan(key)) is not None:
                return plan
        elif arrival.plan is not None:
            return arrival.plan
        plan = self.planner(push.message, key, ticket)
        pipe = self.runtime.pushes.pipeline()  # the plan and an unused rate count: one round trip
        self.runtime.pushes.save_plan(key, plan, pipe)
        self.runtime.limits.unused_in(pipe, ticket)
        pipe.execute()
        return plan


def request_digest(inbound: Inbound) -> str:
    """What a signature is bound to: the method, every query parameter and the body."""
    query = json.dumps(sorted(inbound.args.items()), ensure_ascii=False)
    head = f"{inbound.method}\n{query}\n".encode("utf-8", "surrogatepass")
    return hashlib.sha256(head + inbound.body).hexdigest()


def new_request_id() -> str:
    """12 hex digits that tie a push's log lines together: random (each process's generator is seeded
    anew after gunicorn forks it), not secret, so no system call as uuid4 makes for each."""
    return f"{random.getrandbits(48):012x}"


def kind_of(push: Push) -> str:
    """`text`, `voice`, … or `event:subscribe`, … (labels for logs and metrics)."""
    message = push.message
    if message.type == "event":
        return f"event:{getattr(message, 'event', '') or 'unknown'}"
    return str(message.type)
