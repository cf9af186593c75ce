"""A question for the LLM (or an image, or meeting minutes): checks, then an answer and its job."""

from __future__ import annotations

from bot import texts
from bot.delivery.passive import reserved_for
from bot.store.pushes import Plan
from handlers.context import Context


def refusal(ctx: Context) -> str | None:
    """Why this user may not ask now (banned, too fast, quota used up), or None."""
    runtime = ctx.runtime
    if runtime.admin.is_banned(ctx.openid):
        return texts.BANNED
    if ctx.is_admin:
        return None
    quota = runtime.overrides.daily_quota()
    verdict = runtime.limits.admit(ctx.openid, quota)
    if verdict == "rate":
        return texts.RATE_LIMITED
    if verdict == "quota":
        return texts.QUOTA_REACHED.format(quota=quota)
    return None


def ask(ctx: Context, question: str, *, kind: str = "text", media_id: str = "") -> Plan:
    """Create the answer, queue its generation, and say how it will be delivered."""
    if (refused := refusal(ctx)) is not None:
        return Plan("reply", refused)
    mode = ctx.delivery_mode()
    answer_id = ctx.runtime.answers.create(
        ctx.openid,
        question,
        owner=ctx.push_key,
        reserved_for=reserved_for(ctx.runtime.settings, mode),
        delivery=mode,
        kind=kind,
        media_id=media_id,
    )
    ctx.jobs.enqueue(answer_id)
    return Plan("ask", answer_id=answer_id, delivery=mode)
