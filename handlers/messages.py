"""What each kind of inbound message becomes: a ready reply, nothing, or a question for the LLM."""

from __future__ import annotations

from wechatpy.messages import BaseMessage

from bot import texts
from bot.answering.jobs import Jobs
from bot.runtime import Runtime
from bot.store import keys
from bot.store.pushes import Plan
from handlers import commands
from handlers.context import Context
from handlers.questions import ask

#: events that need no reply (WeChat gets `success`)
SILENT_EVENTS = ("unsubscribe", "view", "location", "view_miniprogram", "templatesendjobfinish")


class Router:
    """The webhook's planner: builds the handler context of a push and routes its message."""

    def __init__(self, runtime: Runtime, jobs: Jobs) -> None:
        self.runtime = runtime
        self.jobs = jobs

    def __call__(self, message: BaseMessage, push_key: str) -> Plan:
        return plan_for(message, Context(str(message.source), push_key, self.runtime, self.jobs))


def plan_for(message: BaseMessage, ctx: Context) -> Plan:
    if message.type == "text":
        return on_text(str(message.content or ""), ctx)
    if message.type == "voice":
        return on_voice(message, ctx)
    if message.type == "event":
        return on_event(str(getattr(message, "event", "")), ctx)
    return Plan("reply", texts.UNSUPPORTED)


def on_text(content: str, ctx: Context) -> Plan:
    content = content.strip()
    if not content:
        return Plan("reply", texts.EMPTY_MESSAGE)
    if commands.is_command(content):
        return commands.run(content, ctx)
    if content.lower() in texts.FETCH_WORDS:
        return Plan("fetch")
    if ctx.recording_minutes():
        return add_minutes_text(ctx, content)
    return ask(ctx, content)


def on_voice(message: BaseMessage, ctx: Context) -> Plan:
    recognition = str(getattr(message, "recognition", None) or "").strip()
    if ctx.recording_minutes() and not commands.is_command(recognition):
        return add_minutes_voice(ctx, str(message.media_id), recognition)
    if recognition:
        return on_text(recognition, ctx)
    return ask(ctx, "", kind="voice", media_id=str(message.media_id))


def on_event(event: str, ctx: Context) -> Plan:
    if event.startswith("subscribe"):
        return Plan("reply", ctx.runtime.overrides.welcome_text() or texts.WELCOME)
    if event in SILENT_EVENTS:
        return Plan("silent")
    return Plan("reply", texts.UNSUPPORTED) if event == "click" else Plan("silent")


def add_minutes_text(ctx: Context, text: str) -> Plan:
    redis = ctx.runtime.redis
    count = redis.rpush(keys.minutes(ctx.openid), text)
    redis.expire(keys.minutes(ctx.openid), keys.MINUTES_TTL)
    return Plan("reply", texts.MINUTES_PIECE.format(n=int(count)))


def add_minutes_voice(ctx: Context, media_id: str, recognition: str) -> Plan:
    if recognition:
        return add_minutes_text(ctx, recognition)
    redis = ctx.runtime.redis
    pipe = redis.pipeline()
    pipe.incr(keys.minutes_pending(ctx.openid))
    pipe.expire(keys.minutes_pending(ctx.openid), keys.MINUTES_TTL)
    pipe.rpush(keys.minutes(ctx.openid), texts.MINUTES_TRANSCRIBING)  # keeps the piece's place
    pipe.expire(keys.minutes(ctx.openid), keys.MINUTES_TTL)
    count = int(pipe.execute()[2])
    ctx.jobs.enqueue_minutes_piece(ctx.openid, media_id, count - 1)
    return Plan("reply", texts.MINUTES_PIECE.format(n=count))
