"""Background chores besides answers: transcribing a meeting's voice pieces, broadcasting."""

from __future__ import annotations

import logging

from bot import texts
from bot.media.voice import TranscriptionError
from bot.runtime import Runtime
from bot.wechat.api import WeChatAPIError

log = logging.getLogger(__name__)


def record_minutes_piece(runtime: Runtime, openid: str, media_id: str, index: int) -> None:
    """Transcribe one voice piece of a meeting into its place (`index`) in the transcript."""
    try:
        text = runtime.transcriber.transcribe_media(media_id)
    except TranscriptionError as exc:
        log.warning("minutes piece of %s not transcribed: %s", openid, exc)
        text = texts.MINUTES_PIECE_UNRECOGNISED
    runtime.minutes.fill_voice(openid, index, text or texts.MINUTES_PIECE_EMPTY)


def broadcast(runtime: Runtime, admin: str, text: str) -> dict[str, int]:
    """Send `text` to every user whose customer-service window is open; report to the admin."""
    sent = failed = 0
    for openid in runtime.stats.window_open():
        try:
            runtime.wechat.send_text(openid, text)
            sent += 1
        except WeChatAPIError as exc:
            failed += 1
            log.info("broadcast to %s failed: %s", openid, exc)
    report = texts.BROADCAST_REPORT.format(sent=sent, failed=failed)
    runtime.broadcasts.save_report(report)
    try:
        runtime.wechat.send_text(admin, report)
    except WeChatAPIError as exc:
        log.warning("broadcast report not sent to %s: %s", admin, exc)
    return {"sent": sent, "failed": failed}
