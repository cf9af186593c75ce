"""Background chores besides answers: transcribing a meeting's voice pieces, broadcasting."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot import texts
from bot.media.voice import TranscriptionError
from bot.runtime import Runtime
from bot.wechat.api import WeChatAPIError

log = logging.getLogger(__name__)

#: one broadcast job sends for at most this long, then the next job goes on
BATCH_SECONDS = 60.0
#: a follower claimed this long ago and not recorded was being sent to by a run that died
CLAIM_STALE_SECONDS = 120.0
#: how long to wait for other runs to record their last sends before reporting
REPORT_RETRY_SECONDS = 5.0


def record_minutes_piece(runtime: Runtime, openid: str, media_id: str, index: int, meeting: str) -> None:
    """Transcribe one voice piece of a meeting into its place (`index`) in the transcript. A piece whose
    meeting was restarted, written or forgotten meanwhile is stale: not transcribed, and (if it became
    stale during the transcription) its transcript changes nothing."""
    minutes = runtime.minutes
    if not minutes.awaits(openid, meeting, index):
        log.info("minutes piece %s of %s skipped: meeting %r over or piece done", index, openid, meeting)
        return
    if runtime.admin.is_banned(openid):  # banned since it was queued: no download, no transcription
        log.info("minutes piece %s of %s not transcribed: the user is banned", index, openid)
        text = texts.MINUTES_PIECE_BANNED
    else:
        text = _transcribed(runtime, openid, media_id)
    if not minutes.fill_voice(openid, meeting, index, text or texts.MINUTES_PIECE_EMPTY):
        log.info("minutes piece %s of %s dropped: its meeting %r ended meanwhile", index, openid, meeting)


def _transcribed(runtime: Runtime, openid: str, media_id: str) -> str:
    """A voice piece's text; MINUTES_PIECE_UNRECOGNISED when it could not be had."""
    try:
        return runtime.transcriber.transcribe_media(media_id)
    except TranscriptionError as exc:
        log.warning("minutes piece of %s not transcribed: %s", openid, exc)
    except Exception:
        # whatever failed, the piece must not stay 「（语音转写中）」: /minutes end would wait for it, then
        # summarise the placeholder (when Redis is what failed, fill_voice raises too and the job is retried)
        log.exception("minutes piece of %s not transcribed: unexpected error", openid)
    return texts.MINUTES_PIECE_UNRECOGNISED


def broadcast(
    runtime: Runtime,
    broadcast_id: str,
    again: Callable[[float], None],
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Send one batch of a broadcast (at most BATCH_SECONDS, far below the job's time limit), then
    continue in a new job (`again(delay)`), until every follower had their turn; then report to the
    admin, once. A redelivered job goes on where the broadcast stopped (bot/store/broadcasts.py)."""
    log_ = runtime.broadcasts
    progress = log_.progress(broadcast_id)
    if progress is None or progress.reported:
        return "gone"
    started = clock()
    while (openid := log_.claim_next(broadcast_id, progress.total)) is not None:
        log_.record(broadcast_id, sent=_send_one(runtime, openid, progress.text))
        if clock() - started > BATCH_SECONDS:
            again(0)
            return "continued"
    return _report(runtime, broadcast_id, again)


def _send_one(runtime: Runtime, openid: str, text: str) -> bool:
    try:
        runtime.wechat.send_text(openid, text)
        return True
    except WeChatAPIError as exc:
        log.info("broadcast to %s failed: %s", openid, exc)
        return False


def _report(runtime: Runtime, broadcast_id: str, again: Callable[[float], None]) -> str:
    """Report once every claimed follower is recorded; a claim left by a dead run counts as unknown
    after CLAIM_STALE_SECONDS."""
    progress = runtime.broadcasts.progress(broadcast_id)
    if progress is None:
        return "gone"
    if progress.unknown and time.time() - progress.last_claim < CLAIM_STALE_SECONDS:
        again(REPORT_RETRY_SECONDS)  # another run is finishing its last sends
        return "waiting"
    if not runtime.broadcasts.mark_reported(broadcast_id):
        return "gone"  # another run reported it
    report = texts.BROADCAST_REPORT.format(sent=progress.sent, failed=progress.failed)
    if progress.unknown:
        report += texts.BROADCAST_UNKNOWN.format(unknown=progress.unknown)
    runtime.broadcasts.save_report(report)
    try:
        runtime.wechat.send_text(progress.admin, report)
    except WeChatAPIError as exc:
        log.warning("broadcast report not sent to %s: %s (/broadcast shows it)", progress.admin, exc)
    return "reported"
