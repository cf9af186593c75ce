"""Chat commands: one decorated function each; `admin_only` is enforced here, in `run` only.

Commands start with `/` (or the full-width `／`), never reach the LLM as chat, and are answered at
once. An unknown command and an admin command sent by a non-admin get the same answer. Every admin
command is written to the audit log, also here in `run`. Their texts are in bot/texts.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from bot import texts
from bot.llm import LLMError, default_model
from bot.store.pushes import Plan
from handlers.context import Context
from handlers.questions import ask

#: a command returns a text to reply, or a Plan (e.g. a question for the LLM, an image)
CommandFn = Callable[[Context, str], "str | Plan"]


@dataclass(frozen=True)
class Command:
    name: str
    admin_only: bool
    hidden: bool
    fn: CommandFn

    @property
    def help(self) -> str:
        return texts.COMMAND_HELP[self.name]


COMMANDS: dict[str, Command] = {}


def command(name: str, *, admin_only: bool = False, hidden: bool = False) -> Callable[[CommandFn], CommandFn]:
    def register(fn: CommandFn) -> CommandFn:
        COMMANDS[name] = Command(name, admin_only, hidden, fn)
        return fn

    return register


def is_command(text: str) -> bool:
    return text.startswith(("/", "／"))


def run(text: str, ctx: Context) -> Plan:
    name, _, args = text[1:].strip().partition(" ")
    found = COMMANDS.get(name.lower())
    if found is None or (found.admin_only and not ctx.is_admin):
        return Plan("reply", texts.UNKNOWN_COMMAND)
    result = found.fn(ctx, args.strip())
    if found.admin_only:
        ctx.runtime.admin.audit(ctx.openid, found.name, args.strip())
    return result if isinstance(result, Plan) else Plan("reply", result)


# --- everyone ----------------------------------------------------------------------------------
@command("help")
def help_command(ctx: Context, args: str) -> str:
    visible = [c for c in COMMANDS.values() if not c.hidden and (ctx.is_admin or not c.admin_only)]
    lines = [texts.HELP_HEADER] + [f"/{c.name} — {c.help}" for c in visible]
    return "\n".join([*lines, "", texts.HELP_FOOTER])


@command("reset")
def reset_command(ctx: Context, args: str) -> str:
    ctx.runtime.history.clear(ctx.openid)
    return texts.RESET_DONE


@command("whoami")
def whoami_command(ctx: Context, args: str) -> str:
    return texts.WHOAMI.format(openid=ctx.openid, admin=texts.WHOAMI_ADMIN if ctx.is_admin else "")


@command("model")
def model_command(ctx: Context, args: str) -> str:
    models = list_models(ctx)
    if models is None:
        return texts.MODEL_UNAVAILABLE
    choices = ctx.runtime.models
    if not args:
        current = choices.get(ctx.openid) or default_model(ctx.runtime.settings)
        return texts.MODEL_LIST.format(current=current, models="\n".join(models[:30]))
    if args not in models:
        return texts.MODEL_UNKNOWN.format(model=args)
    choices.set(ctx.openid, args)
    return texts.MODEL_SWITCHED.format(model=args)


#: /model answers inside WeChat's window even when the backend is slow to list its models
MODELS_WAIT_SECONDS = 3.0
_lister = ThreadPoolExecutor(max_workers=4, thread_name_prefix="list-models")


def list_models(ctx: Context) -> list[str] | None:
    """The backend's models, or None when it fails or takes longer than MODELS_WAIT_SECONDS."""
    future = _lister.submit(ctx.runtime.backend.models)
    try:
        return future.result(timeout=MODELS_WAIT_SECONDS)
    except (LLMError, FutureTimeout):
        return None


@command("image")
def image_command(ctx: Context, args: str) -> str | Plan:
    if not args:
        return texts.IMAGE_USAGE
    return ask(ctx, args, kind="image")


@command("minutes")
def minutes_command(ctx: Context, args: str) -> str | Plan:
    minutes = ctx.runtime.minutes
    if args.lower() not in texts.MINUTES_END_WORDS:
        minutes.start(ctx.openid)
        return texts.MINUTES_STARTED
    if not minutes.stop(ctx.openid):
        return texts.MINUTES_NOT_STARTED
    return ask(ctx, "", kind="minutes")  # the job puts the transcript in the question


@command("auth", hidden=True)
def auth_command(ctx: Context, args: str) -> str:
    redeemed = ctx.runtime.admin.redeem(ctx.openid, args)
    if redeemed is None:
        return texts.AUTH_LOCKED
    return texts.AUTH_OK if redeemed else texts.AUTH_FAILED


# --- admins ------------------------------------------------------------------------------------
@command("stats", admin_only=True)
def stats_command(ctx: Context, args: str) -> str:
    """Today's figures (the day in TIMEZONE)."""
    runtime = ctx.runtime
    metrics = runtime.metrics
    latency = metrics.average("llm_latency_seconds", today=True, outcome="ok")
    cs_failures = _labels(metrics.counter("customer_service_failures", today=True), prefix=texts.STATS_CS)
    failures = "，".join(filter(None, [_labels(metrics.counter("job_failures", today=True)), cs_failures]))
    return texts.STATS.format(
        users=runtime.stats.users_today(),
        messages=runtime.stats.messages_today(),
        paths=_labels(metrics.counter("pages_delivered", today=True)) or texts.STATS_NONE,
        failures=failures or texts.STATS_NONE,
        undelivered=sum(metrics.counter("undelivered", today=True).values()),
        latency=texts.STATS_SECONDS.format(seconds=latency) if latency is not None else texts.STATS_NO_DATA,
    )


def _labels(counter: dict[str, int], prefix: str = "") -> str:
    """`{"path": "attempt_1"}: 3` → 第1次推送 3, in a stable order."""
    parts = []
    for label, count in counter.items():
        values = [texts.STATS_LABELS.get(value, value) for value in json.loads(label).values()]
        parts.append(f"{prefix}{'/'.join(values) or '-'} {count}")
    return "，".join(sorted(parts))


@command("ban", admin_only=True)
def ban_command(ctx: Context, args: str) -> str:
    if not args:
        return texts.USAGE.format(usage=texts.USAGE_BAN)
    ctx.runtime.admin.ban(args)
    return texts.BANNED_DONE.format(openid=args)


@command("unban", admin_only=True)
def unban_command(ctx: Context, args: str) -> str:
    if not args:
        return texts.USAGE.format(usage=texts.USAGE_UNBAN)
    found = ctx.runtime.admin.unban(args)
    return (texts.UNBANNED_DONE if found else texts.NOT_BANNED).format(openid=args)


@command("system", admin_only=True)
def system_command(ctx: Context, args: str) -> str:
    if not args:
        return texts.SYSTEM_SHOW.format(prompt=ctx.runtime.overrides.system_prompt() or texts.EMPTY_PROMPT)
    ctx.runtime.overrides.set("system_prompt", args)
    return texts.SYSTEM_SET


@command("welcome", admin_only=True)
def welcome_command(ctx: Context, args: str) -> str:
    if not args:
        return texts.USAGE.format(usage=texts.USAGE_WELCOME)
    ctx.runtime.overrides.set("welcome_text", args)
    return texts.WELCOME_SET


@command("quota", admin_only=True)
def quota_command(ctx: Context, args: str) -> str:
    if not args:
        return texts.QUOTA_SHOW.format(quota=ctx.runtime.overrides.daily_quota())
    if not args.isdigit():
        return texts.USAGE.format(usage=texts.USAGE_QUOTA)
    ctx.runtime.overrides.set("daily_quota", str(int(args)))
    return texts.QUOTA_SET.format(quota=int(args))


@command("broadcast", admin_only=True)
def broadcast_command(ctx: Context, args: str) -> str:
    runtime = ctx.runtime
    if runtime.settings.wechat_reply_mode != "active":
        return texts.BROADCAST_PASSIVE
    if not args:
        return runtime.broadcasts.last_report() or texts.USAGE.format(usage=texts.USAGE_BROADCAST)
    audience = runtime.stats.window_open()
    ctx.jobs.enqueue_broadcast(ctx.openid, args)
    return texts.BROADCAST_QUEUED.format(count=len(audience))


@command("admins", admin_only=True)
def admins_command(ctx: Context, args: str) -> str:
    return texts.ADMINS_LIST.format(admins="\n".join(ctx.runtime.admin.admins()))
