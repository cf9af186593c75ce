"""Chat commands: one decorated function each; `admin_only` is enforced here, in `run` only.

Commands start with `/` (or the full-width `／`), never reach the LLM as chat, and are answered at
once. An unknown command and an admin command sent by a non-admin get the same answer. Every admin
command is written to the audit log, also here in `run`. Their texts are in bot/texts.py.

A non-admin's command counts against the rate limit (a banned user's is refused), checked in `run` too,
except for a command registered with `checks_itself`: what it costs depends on its arguments (/image,
/minutes), so it calls `refusal` (or `ask`) on each path itself. A `stateless` command (it reads nothing
from Redis and changes nothing) is answered before its push reaches Redis (handlers/router.py `ready`).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from bot import texts
from bot.knowledge import reports as kb_reports
from bot.llm import LLMError, default_model
from bot.store.console import LOGIN_TTL as CONSOLE_LOGIN_TTL
from bot.store.pushes import Plan
from handlers.context import Context, NotReady
from handlers.questions import ask, queue_answer, refusal

log = logging.getLogger(__name__)

#: a command returns a text to reply, or a Plan (e.g. a question for the LLM, an image)
CommandFn = Callable[[Context, str], "str | Plan"]


@dataclass(frozen=True)
class Command:
    name: str
    admin_only: bool
    hidden: bool
    fn: CommandFn
    checks_itself: bool = False
    #: answered from the process alone (no Redis data, no change): planned before the push's arrival
    stateless: bool = False

    @property
    def help(self) -> str:
        return texts.COMMAND_HELP[self.name]


COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    *,
    admin_only: bool = False,
    hidden: bool = False,
    checks_itself: bool = False,
    stateless: bool = False,
) -> Callable[[CommandFn], CommandFn]:
    def register(fn: CommandFn) -> CommandFn:
        COMMANDS[name] = Command(name, admin_only, hidden, fn, checks_itself, stateless)
        return fn

    return register


def is_command(text: str) -> bool:
    return text.startswith(("/", "／"))


def split(text: str) -> tuple[str, str]:
    """`/name args` → (name, args): split at any whitespace (the full-width space of Chinese input too)."""
    name, *rest = text[1:].split(maxsplit=1) or [""]
    return name.lower(), (rest[0].strip() if rest else "")


def run(text: str, ctx: Context) -> Plan:
    name, args = split(text)
    found = COMMANDS.get(name)
    if found is not None and found.admin_only and not ctx.is_admin:
        found = None  # an admin command looks unknown to others, whatever their limits say
    checked_here = not ctx.is_admin and not (found is not None and found.checks_itself)
    if checked_here and (refused := refusal(ctx, "message")) is not None:
        return Plan("reply", refused)
    if found is None:
        return Plan("reply", texts.UNKNOWN_COMMAND)
    if ctx.ahead and not found.stateless:
        raise NotReady(f"/{found.name} is not stateless")
    result = found.fn(ctx, args)
    if found.admin_only:
        ctx.runtime.admin.audit(ctx.openid, found.name, args)
    return result if isinstance(result, Plan) else Plan("reply", result)


# --- everyone ----------------------------------------------------------------------------------
@command("help", stateless=True)
def help_command(ctx: Context, args: str) -> str:
    drawing = ctx.runtime.settings.openai_api_usable  # /image needs the OpenAI API (or a server like it)
    visible = [
        c
        for c in COMMANDS.values()
        if not c.hidden and (ctx.is_admin or not c.admin_only) and (drawing or c.name != "image")
    ]
    lines = [texts.HELP_HEADER] + [f"/{c.name} — {c.help}" for c in visible]
    return "\n".join([*lines, "", texts.HELP_FOOTER])


@command("reset")
def reset_command(ctx: Context, args: str) -> str:
    ctx.runtime.reset_conversation(ctx.openid)
    return texts.RESET_DONE


@command("whoami", stateless=True)
def whoami_command(ctx: Context, args: str) -> str:
    return texts.WHOAMI.format(openid=ctx.openid, admin=texts.WHOAMI_ADMIN if ctx.is_admin else "")


@command("model")
def model_command(ctx: Context, args: str) -> str:
    """The allowed models (ALLOWED_MODELS and the configured one) that the backend serves; a choice
    lasts a week (bot/store/users.py ModelChoices)."""
    listed = list_models(ctx)
    if listed is None:
        return texts.MODEL_UNAVAILABLE
    choices = ctx.runtime.models
    models = [model for model in choices.allowed if model in listed]
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


@command("image", checks_itself=True)
def image_command(ctx: Context, args: str) -> str | Plan:
    """An image counts as a question and against the daily image quota (USER_DAILY_IMAGES)."""
    if not args:
        return refusal(ctx, "message") or texts.IMAGE_USAGE
    if not ctx.runtime.settings.openai_api_usable:
        # the first-run local model (or a FastChat cluster) leaves no OpenAI API to draw with: say so at
        # once, instead of a job that fails on api.openai.com with "connection error" and a quota spent
        log.warning("/image: OPENAI_IMAGE_MODEL needs OPENAI_API_KEY, or OPENAI_BASE_URL set to a server")
        return refusal(ctx, "message") or texts.IMAGE_UNAVAILABLE
    return ask(ctx, args, kind="image")


@command("minutes", checks_itself=True)
def minutes_command(ctx: Context, args: str) -> str | Plan:
    """Starting counts as a command; the minutes count as a question, checked before the recording
    stops, so that a refused /minutes end keeps it for a later one."""
    minutes = ctx.runtime.minutes
    if args.lower() in texts.MINUTES_CANCEL_WORDS:
        return refusal(ctx, "message") or _cancel_minutes(ctx)
    if args.lower() not in texts.MINUTES_END_WORDS:
        if (refused := refusal(ctx, "message")) is not None:
            return refused
        minutes.start(ctx.openid)
        return texts.MINUTES_STARTED
    if not minutes.recording(ctx.openid):
        return refusal(ctx, "message") or texts.MINUTES_NOT_STARTED
    if (refused := refusal(ctx, "question")) is not None:
        return refused
    meeting = minutes.stop(ctx.openid)
    if meeting is None:  # another message ended it meanwhile
        return texts.MINUTES_NOT_STARTED
    # the job puts the transcript in the question; media_id: the meeting (bot/answering/kinds.py)
    return queue_answer(ctx, "", kind="minutes", media_id=meeting)


def _cancel_minutes(ctx: Context) -> str:
    """/minutes cancel: the recording ends and its pieces are dropped, no minutes written — the way out
    when the minutes cannot be written (a model whose token limit cuts them every time keeps the
    recording on for another /minutes end, and every message would otherwise become a piece)."""
    meeting = ctx.runtime.minutes.stop(ctx.openid)
    if meeting is None:
        return texts.MINUTES_NOT_STARTED
    ctx.runtime.minutes.clear(ctx.openid, meeting)
    return texts.MINUTES_CANCELLED


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
        experts=_labels(metrics.counter("answers_by_expert", today=True)) or texts.STATS_NONE,
        tools=_labels(metrics.counter("tool_calls", today=True)) or texts.STATS_NONE,
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
    if not (args.isdecimal() and len(args) <= 9):  # isdigit() takes ², which int() refuses
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
    # a banned user gets the ban sentence and nothing else from the bot: not an announcement either
    audience = [openid for openid in runtime.stats.window_open() if not runtime.admin.is_banned(openid)]
    ctx.jobs.enqueue_broadcast(runtime.broadcasts.create(ctx.openid, args, audience))
    return texts.BROADCAST_QUEUED.format(count=len(audience))


@command("admins", admin_only=True)
def admins_command(ctx: Context, args: str) -> str:
    return texts.ADMINS_LIST.format(admins="\n".join(ctx.runtime.admin.admins()))


@command("console", admin_only=True)
def console_command(ctx: Context, args: str) -> str:
    """/console: a one-time link to the operator console (bot/console/); /console logout: end every
    console session of this admin."""
    runtime = ctx.runtime
    if args.lower() == "logout":
        return texts.CONSOLE_LOGGED_OUT.format(count=runtime.console.end_all(ctx.openid))
    if args:
        return texts.USAGE.format(usage=texts.USAGE_CONSOLE)
    if not runtime.settings.public_base_url:
        return texts.CONSOLE_NO_BASE_URL
    url = f"{runtime.settings.public_base_url}/console/login/{runtime.console.new_login(ctx.openid)}"
    return texts.CONSOLE_LINK.format(minutes=CONSOLE_LOGIN_TTL // 60, url=url)


@command("kb", admin_only=True)
def kb_command(ctx: Context, args: str) -> str:
    """/kb: the knowledge base at a glance; /kb sync: the account's articles into it (a job; the report
    comes back later); /kb search QUESTION: the passages the bot would give the model, with scores."""
    runtime, budget = ctx.runtime, ctx.runtime.settings.wechat_max_reply_bytes
    action, *rest = args.split(maxsplit=1) or [""]
    query = rest[0].strip() if rest else ""
    if not action:
        return kb_reports.status_text(runtime.knowledge, runtime.settings.zone, budget)
    if action.lower() == "sync" and not query:
        if not (runtime.settings.wechat_appid and runtime.settings.wechat_secret):
            return texts.KB_SYNC_NO_CREDENTIALS
        token = uuid.uuid4().hex
        if not runtime.knowledge.store.claim_sync(token):
            return texts.KB_SYNC_BUSY
        ctx.jobs.enqueue_kb_sync(ctx.openid, token)
        active = ctx.delivery_mode() == "active"
        return texts.KB_SYNC_STARTED_ACTIVE if active else texts.KB_SYNC_STARTED_PASSIVE
    if action.lower() == "search" and query:
        return kb_reports.search_text(runtime.knowledge, query, budget)
    return texts.USAGE.format(usage=texts.USAGE_KB)
