"""Chat commands: one decorated function each; `admin_only` is enforced here, in `run` only.

Commands start with `/` (or the full-width `／`), never reach the LLM as chat, and are answered at
once. An unknown command and an admin command sent by a non-admin get the same answer. Every admin
command is written to the audit log (Redis), also here in `run`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from bot import texts
from bot.llm import LLMError
from bot.store import keys
from bot.store.pushes import Plan
from handlers.context import Context
from handlers.questions import ask

#: a command returns a text to reply, or a Plan (e.g. a question for the LLM, an image)
CommandFn = Callable[[Context, str], "str | Plan"]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    admin_only: bool
    hidden: bool
    fn: CommandFn


COMMANDS: dict[str, Command] = {}


def command(
    name: str, help: str, *, admin_only: bool = False, hidden: bool = False
) -> Callable[[CommandFn], CommandFn]:
    def register(fn: CommandFn) -> CommandFn:
        COMMANDS[name] = Command(name, help, admin_only, hidden, fn)
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
@command("help", "查看可用命令 (help)")
def help_command(ctx: Context, args: str) -> str:
    visible = [c for c in COMMANDS.values() if not c.hidden and (ctx.is_admin or not c.admin_only)]
    lines = [texts.HELP_HEADER] + [f"/{c.name} — {c.help}" for c in visible]
    return "\n".join([*lines, "", texts.HELP_FOOTER])


@command("reset", "清空我的对话记录 (reset)")
def reset_command(ctx: Context, args: str) -> str:
    ctx.runtime.history.clear(ctx.openid)
    return texts.RESET_DONE


@command("whoami", "查看我的 openid (whoami)")
def whoami_command(ctx: Context, args: str) -> str:
    return texts.WHOAMI.format(openid=ctx.openid, admin=texts.WHOAMI_ADMIN if ctx.is_admin else "")


@command("model", "查看/切换模型：/model [名称] (model)")
def model_command(ctx: Context, args: str) -> str:
    redis = ctx.runtime.redis
    models = list_models(ctx)
    if models is None:
        return texts.MODEL_UNAVAILABLE
    if not args:
        current = redis.get(keys.user_model(ctx.openid)) or default_model(ctx)
        return texts.MODEL_LIST.format(current=current, models="\n".join(models[:30]))
    if args not in models:
        return texts.MODEL_UNKNOWN.format(model=args)
    redis.set(keys.user_model(ctx.openid), args)
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


def default_model(ctx: Context) -> str:
    settings = ctx.runtime.settings
    return settings.fastchat_model if settings.llm_backend == "fastchat" else settings.openai_model


@command("image", "生成图片：/image 描述 (image)")
def image_command(ctx: Context, args: str) -> str | Plan:
    if not args:
        return texts.IMAGE_USAGE
    return ask(ctx, args, kind="image")


@command("minutes", "会议纪要：/minutes 开始，/minutes end 生成 (minutes)")
def minutes_command(ctx: Context, args: str) -> str | Plan:
    redis = ctx.runtime.redis
    if args.lower() not in ("end", "stop", "结束"):
        redis.delete(keys.minutes(ctx.openid), keys.minutes_pending(ctx.openid))
        redis.set(keys.minutes_on(ctx.openid), "1", ex=keys.MINUTES_TTL)
        return texts.MINUTES_STARTED
    if not redis.delete(keys.minutes_on(ctx.openid)):
        return texts.MINUTES_NOT_STARTED
    return ask(ctx, "", kind="minutes")  # the job puts the transcript in the question


@command("auth", "成为管理员：/auth 验证码", hidden=True)
def auth_command(ctx: Context, args: str) -> str:
    redeemed = ctx.runtime.admin.redeem(ctx.openid, args)
    if redeemed is None:
        return texts.AUTH_LOCKED
    return texts.AUTH_OK if redeemed else texts.AUTH_FAILED


# --- admins ------------------------------------------------------------------------------------
@command("stats", "今日统计 (stats)", admin_only=True)
def stats_command(ctx: Context, args: str) -> str:
    runtime = ctx.runtime
    answers = runtime.metrics.counter("answers")
    failures = runtime.metrics.counter("job_failures")
    latency = runtime.metrics.average("llm_latency_seconds")
    return texts.STATS.format(
        users=runtime.limits.users_today(),
        messages=runtime.limits.messages_today(),
        paths=_labels(answers) or "无",
        failures=_labels(failures) or "无",
        undelivered=len(runtime.metrics.undelivered_records(1000)),
        latency=f"{latency:.1f} 秒" if latency is not None else "无数据",
    )


def _labels(counter: dict[str, int]) -> str:
    parts = [f"{'/'.join(json.loads(label).values()) or '-'} {count}" for label, count in counter.items()]
    return "，".join(sorted(parts))


@command("ban", "禁止用户：/ban OPENID (ban)", admin_only=True)
def ban_command(ctx: Context, args: str) -> str:
    if not args:
        return texts.USAGE.format(usage="/ban OPENID")
    ctx.runtime.admin.ban(args)
    return texts.BANNED_DONE.format(openid=args)


@command("unban", "解除禁止：/unban OPENID (unban)", admin_only=True)
def unban_command(ctx: Context, args: str) -> str:
    if not args:
        return texts.USAGE.format(usage="/unban OPENID")
    found = ctx.runtime.admin.unban(args)
    return (texts.UNBANNED_DONE if found else texts.NOT_BANNED).format(openid=args)


@command("system", "查看/设置系统提示词：/system [内容] (system)", admin_only=True)
def system_command(ctx: Context, args: str) -> str:
    if not args:
        return texts.SYSTEM_SHOW.format(prompt=ctx.runtime.overrides.system_prompt() or "（空）")
    ctx.runtime.overrides.set("system_prompt", args)
    return texts.SYSTEM_SET


@command("welcome", "设置关注欢迎语：/welcome 内容 (welcome)", admin_only=True)
def welcome_command(ctx: Context, args: str) -> str:
    if not args:
        return texts.USAGE.format(usage="/welcome 欢迎语")
    ctx.runtime.overrides.set("welcome_text", args)
    return texts.WELCOME_SET


@command("quota", "每人每日提问上限：/quota [N] (quota)", admin_only=True)
def quota_command(ctx: Context, args: str) -> str:
    if not args:
        return texts.QUOTA_SHOW.format(quota=ctx.runtime.overrides.daily_quota())
    if not args.isdigit():
        return texts.USAGE.format(usage="/quota N（N 为非负整数，0 表示不限）")
    ctx.runtime.overrides.set("daily_quota", str(int(args)))
    return texts.QUOTA_SET.format(quota=int(args))


@command("broadcast", "群发给 48 小时内互动的用户：/broadcast 内容 (broadcast)", admin_only=True)
def broadcast_command(ctx: Context, args: str) -> str:
    if ctx.runtime.settings.wechat_reply_mode != "active":
        return texts.BROADCAST_PASSIVE
    if not args:
        last = ctx.runtime.redis.get(keys.BROADCAST_REPORT)
        return str(last) if last else texts.USAGE.format(usage="/broadcast 内容")
    audience = ctx.runtime.limits.window_open()
    ctx.jobs.enqueue_broadcast(ctx.openid, args)
    return texts.BROADCAST_QUEUED.format(count=len(audience))


@command("admins", "查看管理员 (admins)", admin_only=True)
def admins_command(ctx: Context, args: str) -> str:
    return texts.ADMINS_LIST.format(admins="\n".join(ctx.runtime.admin.admins()))
