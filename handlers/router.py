"""Chat routing: what each inbound message becomes — a ready reply, nothing, or a question for the LLM.

An ordered list of rules, first match wins (as python-telegram-bot's handlers): each rule is a
test and a handler, and reading RULES top to bottom tells what happens to any message.

A push whose rule is `stateless` (its reply needs nothing from Redis but the rate verdict, and it
changes nothing: /help, an unknown command, 继续, an event without an answer…) is planned before its
arrival (`Router.ready`), and the arrival script saves the plan: one round trip to Redis in all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from wechatpy.messages import BaseMessage

from bot import texts
from bot.answering.jobs import Jobs
from bot.runtime import Runtime
from bot.store.limits import RateTicket
from bot.store.pushes import Plan, Planned
from handlers import commands
from handlers.context import Context, NotReady
from handlers.questions import ask, queue_answer, refusal

#: events that need no reply (WeChat gets `success`)
SILENT_EVENTS = ("unsubscribe", "view", "location", "view_miniprogram", "templatesendjobfinish")


@dataclass(frozen=True)
class Incoming:
    """The parts of a push the rules look at. A recognised voice message carries its text."""

    type: str  # text | voice | event | image | …
    text: str = ""
    media_id: str = ""
    event: str = ""
    url: str = ""  # an image's PicUrl

    @classmethod
    def of(cls, message: BaseMessage) -> Incoming:
        if message.type == "text":
            return cls("text", str(message.content or "").strip())
        if message.type == "voice":
            recognition = str(getattr(message, "recognition", None) or "").strip()
            return cls("voice", recognition, media_id=str(message.media_id))
        if message.type == "event":
            return cls("event", event=str(getattr(message, "event", "") or ""))
        if message.type == "image":
            url = str(getattr(message, "image", "") or "")
            return cls("image", media_id=str(message.media_id or ""), url=url)
        return cls(str(message.type))


@dataclass(frozen=True)
class Rule:
    name: str
    matches: Callable[[Incoming, Context], bool]
    handle: Callable[[Incoming, Context], Plan]
    #: its handler needs nothing from Redis but the rate verdict and changes nothing (a command: its
    #: own `stateless`, checked in commands.run): planned before the push's arrival
    stateless: bool = False


def _minutes_text(message: Incoming, ctx: Context) -> Plan:
    """A text piece (or a voice piece WeChat recognised): no outside call, so the rate limit only."""
    if (refused := refusal(ctx, "message")) is not None:
        return Plan("reply", refused)
    piece = ctx.runtime.minutes.add_text(ctx.openid, message.text)
    if piece is None:  # the meeting ended (or expired) since this message was routed
        return Plan("reply", texts.MINUTES_NOT_STARTED)
    return Plan("reply", texts.MINUTES_PIECE.format(n=piece.number))


def _minutes_voice(message: Incoming, ctx: Context) -> Plan:
    """A voice piece to download, convert and transcribe: counted as a question (rate and daily quota)."""
    if message.text:  # WeChat recognised it: a text piece
        return _minutes_text(message, ctx)
    if (refused := refusal(ctx, "question")) is not None:
        return Plan("reply", refused)
    piece = ctx.runtime.minutes.add_pending_voice(ctx.openid)
    if piece is None:
        return Plan("reply", texts.MINUTES_NOT_STARTED)
    ctx.jobs.enqueue_minutes_piece(ctx.openid, message.media_id, piece.index, piece.meeting)
    return Plan("reply", texts.MINUTES_PIECE.format(n=piece.number))


def _photo(message: Incoming, ctx: Context) -> Plan:
    """A photo (VISION_MODEL): described, and what the user's next questions are about. It counts as a
    question (rate and daily quota)."""
    if (refused := refusal(ctx, "question")) is not None:
        return Plan("reply", refused)
    ctx.runtime.photos.remember(ctx.openid, message.media_id, message.url, time.time())
    return queue_answer(ctx, texts.PHOTO_QUESTION, kind="photo", media_id=message.media_id)


def _fetch(message: Incoming, ctx: Context) -> Plan:
    """继续: the next page, or an answer that was late — not for a banned user (the cached ban set, as
    every check reads it). It counts against neither the rate nor the quota."""
    if ctx.runtime.admin.is_banned(ctx.openid):
        return Plan("reply", texts.BANNED)
    return Plan("fetch")


def _welcome(message: Incoming, ctx: Context) -> Plan:
    return Plan("reply", ctx.runtime.overrides.welcome_text() or texts.WELCOME)


def _is_chat(message: Incoming) -> bool:
    return message.type in ("text", "voice")


def _reply(text: str) -> Callable[[Incoming, Context], Plan]:
    return lambda message, ctx: Plan("reply", text)


RULES: list[Rule] = [
    Rule("follow", lambda m, c: m.type == "event" and m.event.startswith("subscribe"), _welcome),
    Rule(
        "menu click",
        lambda m, c: m.type == "event" and m.event == "click",
        lambda m, c: Plan("reply", texts.UNSUPPORTED),
        stateless=True,
    ),
    Rule("other events", lambda m, c: m.type == "event", lambda m, c: Plan("silent"), stateless=True),
    Rule(
        "photo",
        lambda m, c: m.type == "image" and bool(m.media_id) and bool(c.runtime.settings.vision_model),
        _photo,
    ),
    Rule("other kinds", lambda m, c: not _is_chat(m), _reply(texts.UNSUPPORTED), stateless=True),
    Rule(
        "meeting voice",
        lambda m, c: m.type == "voice" and not commands.is_command(m.text) and c.recording_minutes(),
        _minutes_voice,
    ),
    Rule(
        "unrecognised voice",
        lambda m, c: m.type == "voice" and not m.text,
        lambda m, c: ask(c, "", kind="voice", media_id=m.media_id),
    ),
    Rule("empty", lambda m, c: not m.text, _reply(texts.EMPTY_MESSAGE), stateless=True),
    Rule(
        "command",
        lambda m, c: commands.is_command(m.text),
        lambda m, c: commands.run(m.text, c),
        stateless=True,
    ),
    Rule("fetch", lambda m, c: m.text.lower() in texts.FETCH_WORDS, _fetch, stateless=True),
    Rule("meeting text", lambda m, c: c.recording_minutes(), _minutes_text),
    Rule("question", lambda m, c: True, lambda m, c: ask(c, m.text)),
]


def route(message: Incoming, ctx: Context) -> Plan:
    """The first matching rule's plan; ahead of the arrival (`ctx.ahead`), NotReady unless stateless."""
    for rule in RULES:
        if rule.matches(message, ctx):
            if ctx.ahead and not rule.stateless:
                raise NotReady(f"rule {rule.name!r} is not stateless")
            return rule.handle(message, ctx)
    raise AssertionError("the last rule matches everything")


class Router:
    """The webhook's planner: builds the handler context of a push and routes its message."""

    def __init__(self, runtime: Runtime, jobs: Jobs) -> None:
        self.runtime = runtime
        self.jobs = jobs

    def __call__(self, message: BaseMessage, push_key: str, ticket: RateTicket | None = None) -> Plan:
        ctx = Context(str(message.source), push_key, self.runtime, self.jobs, ticket)
        return route(Incoming.of(message), ctx)

    def ready(self, message: BaseMessage, push_key: str) -> Planned | None:
        """The plan of a push whose rule is stateless, made before its arrival; None for any other push.
        Routed with a rate ticket that admits it; when a check used the ticket, routed again with one
        that refuses it, for the arrival script to choose between the two with the real count."""
        incoming, openid = Incoming.of(message), str(message.source)
        admits = RateTicket("", count=0, limit=0)
        try:
            plan = route(incoming, Context(openid, push_key, self.runtime, self.jobs, admits, ahead=True))
            if not admits.used:
                return Planned(plan)  # no check counts it: the rate is not counted
            refuses = RateTicket("", count=2, limit=1)
            ctx = Context(openid, push_key, self.runtime, self.jobs, refuses, ahead=True)
            return Planned(plan, route(incoming, ctx))
        except NotReady:
            return None
