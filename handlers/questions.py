"""A question for the LLM (or an image, or meeting minutes): checks, then an answer and its job.

Every kind of work a message asks for goes through `refusal` first — questions, images, commands and
meeting pieces alike — with what it costs (`Work`).
"""

from __future__ import annotations

from typing import Literal

from bot import texts
from bot.delivery.passive import reserved_for
from bot.store.pushes import Plan
from handlers.context import Context

#: What a message costs, for `refusal`. Each counts against the per-minute rate limit; besides:
#: "message": nothing else (a command, a meeting's text piece: no outside call);
#: "question": the daily question quota (a question, a meeting's voice piece to transcribe, the minutes);
#: "image": the daily question quota and the daily image quota (/image).
Work = Literal["message", "question", "image"]


def refusal(ctx: Context, work: Work = "question") -> str | None:
    """Why this user may not have this work done now (banned, too fast, a quota used up), or None; an
    admitted message is counted. Admins are exempt from the limits, not from a ban."""
    runtime = ctx.runtime
    if runtime.admin.is_banned(ctx.openid):
        return texts.BANNED
    if ctx.is_admin:
        return None
    quota = None if work == "message" else runtime.overrides.daily_quota()  # a command uses no quota
    images = runtime.settings.user_daily_images
    verdict = runtime.limits.admit(
        ctx.openid,
        daily_quota=quota,
        image_quota=images if work == "image" else None,
        ticket=ctx.rate_ticket,
    )
    if verdict == "rate":
        return texts.RATE_LIMITED
    if verdict == "quota":
        return texts.QUOTA_REACHED.format(quota=quota)
    if verdict == "images":
        return texts.IMAGE_QUOTA_REACHED.format(quota=images)
    return None


def ask(ctx: Context, question: str, *, kind: str = "text", media_id: str = "") -> Plan:
    """Check, then create the answer and queue its generation."""
    if (refused := refusal(ctx, "image" if kind == "image" else "question")) is not None:
        return Plan("reply", refused)
    return queue_answer(ctx, question, kind=kind, media_id=media_id)


def queue_answer(ctx: Context, question: str, *, kind: str = "text", media_id: str = "") -> Plan:
    """Create the answer, queue its generation, and say how it will be delivered (already checked)."""
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
