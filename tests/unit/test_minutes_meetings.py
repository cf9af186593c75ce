"""Meeting minutes pieces are tagged with their meeting: a late voice piece of a restarted (or written)
meeting changes nothing, the pending count never goes below 0, and every key expires."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis

from bot import texts
from bot.answering.chores import record_minutes_piece
from bot.media.voice import TranscriptionError
from bot.runtime import Runtime
from bot.store import keys
from bot.store.minutes import MinutesStore
from bot.wechat.api import WeChatAPIError


class CountingTranscriber:
    def __init__(self, text: str) -> None:
        self.text = text
        self.calls: list[str] = []

    def transcribe_media(self, media_id: str) -> str:
        self.calls.append(media_id)
        return self.text


def runtime_with(
    store: MinutesStore, transcriber: CountingTranscriber, banned: tuple[str, ...] = ()
) -> Runtime:
    """What record_minutes_piece uses of a runtime: the minutes store, the ban list and the transcriber."""
    admin = SimpleNamespace(is_banned=lambda openid: openid in banned)
    return cast(Runtime, SimpleNamespace(minutes=store, transcriber=transcriber, admin=admin))


def test_a_late_piece_of_a_restarted_meeting_changes_nothing(redis_client: redis.Redis) -> None:
    store = MinutesStore(redis_client)
    old = store.start("u")
    late = store.add_pending_voice("u")
    assert late is not None and late.meeting == old and late.index == 0
    new = store.start("u")  # restarted while the old piece was being transcribed
    assert new != old
    text = store.add_text("u", "new meeting, piece 1")
    voice = store.add_pending_voice("u")
    assert text is not None and voice is not None and voice.index == 1

    assert store.fill_voice("u", late.meeting, late.index, "old transcript") is False
    assert store.pieces("u", new) == ["new meeting, piece 1", texts.MINUTES_TRANSCRIBING]
    assert store.pending("u", new) == 1  # still waiting for the new meeting's own voice piece

    assert store.fill_voice("u", new, voice.index, "new transcript") is True
    assert store.pieces("u", new) == ["new meeting, piece 1", "new transcript"]
    assert store.pending("u", new) == 0


def test_pending_never_goes_below_zero_and_a_retried_fill_counts_once(redis_client: redis.Redis) -> None:
    store = MinutesStore(redis_client)
    meeting = store.start("u")
    piece = store.add_pending_voice("u")
    assert piece is not None
    assert store.fill_voice("u", meeting, piece.index, "said") is True
    assert store.fill_voice("u", meeting, piece.index, "said again") is False  # a retried job
    assert store.pieces("u", meeting) == ["said"]
    assert redis_client.get(keys.minutes_pending("u")) == "0"
    assert store.fill_voice("u", meeting, 7, "no such piece") is False
    assert int(redis_client.get(keys.minutes_pending("u")) or 0) == 0


def test_the_job_of_a_stale_piece_neither_transcribes_nor_writes(redis_client: redis.Redis) -> None:
    store = MinutesStore(redis_client)
    transcriber = CountingTranscriber("old words")
    old = store.start("u")
    late = store.add_pending_voice("u")
    assert late is not None
    new = store.start("u")
    store.add_text("u", "kept")
    record_minutes_piece(runtime_with(store, transcriber), "u", "media-1", late.index, late.meeting)
    assert transcriber.calls == []  # no download, no ffmpeg, no transcription for a stale piece
    assert store.pieces("u", new) == ["kept"] and store.pending("u", new) == 0
    assert store.pieces("u", old) == []


def test_the_job_of_a_current_piece_fills_it(redis_client: redis.Redis) -> None:
    store = MinutesStore(redis_client)
    transcriber = CountingTranscriber("")
    meeting = store.start("u")
    piece = store.add_pending_voice("u")
    assert piece is not None
    record_minutes_piece(runtime_with(store, transcriber), "u", "media-1", piece.index, piece.meeting)
    assert transcriber.calls == ["media-1"]
    assert store.pieces("u", meeting) == [texts.MINUTES_PIECE_EMPTY] and store.pending("u", meeting) == 0


def test_the_piece_of_a_user_banned_since_it_was_queued_is_not_transcribed(redis_client: redis.Redis) -> None:
    """A ban stops the work already queued for the user, as it stops their answers: no download, no
    transcription; the piece is filled (a later /minutes end, after an unban, does not wait for it)."""
    store = MinutesStore(redis_client)
    transcriber = CountingTranscriber("said while banned")
    meeting = store.start("u")
    piece = store.add_pending_voice("u")
    assert piece is not None
    record_minutes_piece(
        runtime_with(store, transcriber, banned=("u",)), "u", "media-1", piece.index, meeting
    )
    assert transcriber.calls == []
    assert store.pieces("u", meeting) == [texts.MINUTES_PIECE_BANNED] and store.pending("u", meeting) == 0


class FailingTranscriber:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def transcribe_media(self, media_id: str) -> str:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        TranscriptionError("cannot download the voice message"),
        AttributeError("'dict' object has no attribute 'headers'"),  # an error nobody foresaw
        WeChatAPIError(None, "media/get answered text/html instead of the file"),
    ],
)
def test_a_piece_that_cannot_be_transcribed_never_stays_pending(
    redis_client: redis.Redis, error: Exception
) -> None:
    """Whatever failed, the piece says so, and /minutes end has nothing to wait for."""
    store = MinutesStore(redis_client)
    meeting = store.start("u")
    piece = store.add_pending_voice("u")
    assert piece is not None
    runtime = runtime_with(store, cast(CountingTranscriber, FailingTranscriber(error)))
    record_minutes_piece(runtime, "u", "media-1", piece.index, piece.meeting)
    assert (
        store.pieces("u", meeting) == [texts.MINUTES_PIECE_UNRECOGNISED] and store.pending("u", meeting) == 0
    )


def test_writing_an_old_meetings_minutes_leaves_a_newer_meeting_alone(redis_client: redis.Redis) -> None:
    store = MinutesStore(redis_client)
    store.start("u")
    store.add_text("u", "old")
    old = store.stop("u")
    assert old is not None
    new = store.start("u")
    store.add_text("u", "new")
    assert store.pieces("u", old) == []  # the old meeting's answer does not read the new one
    store.clear("u", old)
    assert store.resume("u", old) is False
    assert store.pieces("u", new) == ["new"] and store.recording("u")
    store.stop("u")
    assert store.resume("u", new) is True and store.recording("u")
    store.clear("u", new)
    assert store.pieces("u", new) == [] and store.pending("u", new) == 0


def test_no_piece_is_added_when_not_recording(redis_client: redis.Redis) -> None:
    store = MinutesStore(redis_client)
    assert store.add_text("u", "hello") is None and store.add_pending_voice("u") is None
    store.start("u")
    assert store.stop("u") is not None and store.stop("u") is None
    assert store.add_text("u", "after the end") is None
    assert redis_client.llen(keys.minutes("u")) == 0


def test_every_key_of_a_meeting_expires(redis_client: redis.Redis) -> None:
    store = MinutesStore(redis_client)
    meeting = store.start("u")
    store.add_text("u", "text")
    piece = store.add_pending_voice("u")
    assert piece is not None
    store.fill_voice("u", meeting, piece.index, "voice")
    found: list[Any] = redis_client.keys("wxbot:user:u:minutes*")
    assert len(found) == 4
    for key in found:
        assert 0 < redis_client.ttl(key) <= keys.MINUTES_TTL, key


def test_a_piece_keeps_a_long_meeting_recording(redis_client: redis.Redis) -> None:
    """Every piece gives every key of the meeting its expiry again, "recording" too: a meeting that goes
    on past MINUTES_TTL after /minutes still records, and expires only MINUTES_TTL after its last piece."""
    store = MinutesStore(redis_client)
    meeting = store.start("u")
    piece = store.add_pending_voice("u")
    assert piece is not None
    for key in keys.minutes_on("u"), keys.minutes_meeting("u"), keys.minutes("u"), keys.minutes_pending("u"):
        redis_client.expire(key, 5)  # as if the meeting had begun MINUTES_TTL - 5 s ago
    assert store.add_text("u", "a piece near the end of the third hour") is not None
    for key in keys.minutes_on("u"), keys.minutes_meeting("u"), keys.minutes("u"), keys.minutes_pending("u"):
        assert redis_client.ttl(key) > keys.MINUTES_TTL - 60, key
    assert store.recording("u") and store.pieces("u", meeting)[1] == "a piece near the end of the third hour"
