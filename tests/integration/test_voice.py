"""Voice messages: WeChat's Recognition when present, else our own download + transcription."""

from __future__ import annotations

import io
import math
import struct
import subprocess
import wave
from pathlib import Path

import pytest

from bot import texts
from bot.media import voice
from bot.media.voice import TranscriptionError, ffmpeg_binary, to_mp3
from bot.store import keys
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.patience import wait_for
from tests.conftest import Bot


def tone_amr(seconds: float = 0.5) -> bytes:
    """A real AMR voice file, as WeChat's media download gives (encoded by the ffmpeg the bot uses)."""
    binary = ffmpeg_binary()
    assert binary is not None
    command = [binary, "-hide_banner", "-loglevel", "error", "-f", "wav", "-i", "pipe:0"]
    command += [
        "-ar",
        "8000",
        "-ac",
        "1",
        "-c:a",
        "libopencore_amrnb",
        "-b:a",
        "12.2k",
        "-f",
        "amr",
        "pipe:1",
    ]
    return subprocess.run(command, input=tone_wav(seconds), capture_output=True, check=True).stdout


def tone_wav(seconds: float = 0.5, rate: int = 8000) -> bytes:
    """A real audio file of a 440 Hz tone."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = (int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(int(seconds * rate)))
        out.writeframes(b"".join(struct.pack("<h", f) for f in frames))
    return buffer.getvalue()


def test_recognition_is_used_when_present(bot: Bot, fake_openai: FakeOpenAI) -> None:
    delivery = bot.simulator().send_voice("user-1", "media-1", recognition="今天天气怎么样")
    assert delivery.text == "echo: 今天天气怎么样"
    assert fake_openai.transcriptions == []


def test_voice_without_recognition_is_downloaded_and_transcribed(
    bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI
) -> None:
    fake_wechat.add_media("media-2", tone_amr(), "audio/amr")
    fake_openai.set_behavior(transcript="帮我写首诗")
    delivery = bot.simulator().send_voice("user-1", "media-2", recognition=None)
    assert delivery.text == "echo: 帮我写首诗"
    [upload] = fake_openai.transcriptions
    assert upload.filename == "voice.mp3" and upload.model == "whisper-1"
    assert upload.data[:3] == b"ID3" or upload.data[0] == 0xFF
    history = wait_for(lambda: bot.runtime.history.messages("user-1"))
    assert history[0] == {"role": "user", "content": "帮我写首诗"}


def test_voice_that_cannot_be_downloaded_is_explained(bot: Bot, fake_openai: FakeOpenAI) -> None:
    delivery = bot.simulator().send_voice("user-1", "no-such-media", recognition=None)
    assert delivery.text == texts.VOICE_FAILED
    assert fake_openai.chat_requests() == []


#: bodies of /cgi-bin/media/get that are not the file: wechatpy raises only for JSON with a non-zero errcode
ERROR_BODIES = [
    (b'{"errmsg": "media not found"}', "application/json"),  # JSON without errcode: returned decoded
    (b'{"errcode": 0, "errmsg": "ok"}', "text/plain"),
    (b"<html>502 Bad Gateway</html>", "text/plain"),  # not JSON: returned as the response
    (b"<html>502 Bad Gateway</html>", "text/html"),  # a proxy's error page
]


@pytest.mark.parametrize(("body", "content_type"), ERROR_BODIES)
def test_an_error_body_instead_of_the_audio_is_a_failed_voice_message(
    bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI, body: bytes, content_type: str
) -> None:
    """The download failed, not the AI: the follower reads VOICE_FAILED, and nothing is transcribed."""
    fake_wechat.add_media("broken", body, content_type)
    assert bot.simulator().send_voice("user-1", "broken", recognition=None).text == texts.VOICE_FAILED
    assert fake_openai.transcriptions == [] and fake_openai.chat_requests() == []


@pytest.mark.parametrize(("body", "content_type"), ERROR_BODIES[:3])
def test_a_meeting_piece_whose_audio_is_an_error_body_is_marked_unrecognised(
    bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI, body: bytes, content_type: str
) -> None:
    """Not left 「（语音转写中）」 for /minutes end to wait on and then summarise."""
    fake_wechat.add_media("broken", body, content_type)
    sim = bot.simulator()
    assert sim.send_text("user-1", "/minutes").text == texts.MINUTES_STARTED
    assert sim.send_voice("user-1", "broken").text == texts.MINUTES_PIECE.format(n=1)
    meeting = bot.runtime.minutes.redis.get(keys.minutes_meeting("user-1"))
    assert meeting
    wait_for(lambda: bot.runtime.minutes.pending("user-1", meeting) == 0, what="the piece to be filled")
    assert bot.runtime.minutes.pieces("user-1", meeting) == [texts.MINUTES_PIECE_UNRECOGNISED]
    assert fake_openai.transcriptions == []
    fake_openai.set_behavior(reply="纪要")
    assert sim.send_text("user-1", "/minutes end").text == "纪要"
    assert (
        "1. " + texts.MINUTES_PIECE_UNRECOGNISED in fake_openai.chat_requests()[-1]["messages"][1]["content"]
    )


def test_silent_voice_asks_to_repeat(bot: Bot, fake_openai: FakeOpenAI, fake_wechat: FakeWeChatAPI) -> None:
    fake_wechat.add_media("media-3", tone_amr(), "audio/amr")
    fake_openai.set_behavior(transcript="")
    assert bot.simulator().send_voice("user-1", "media-3", recognition=None).text == texts.VOICE_UNRECOGNISED


def test_ffmpeg_does_not_guess_the_format_or_open_other_files(tmp_path: object) -> None:
    """A "voice message" that is an HLS playlist naming a local file is refused, not followed."""
    playlist = b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    with pytest.raises(TranscriptionError):
        to_mp3(playlist)
    with pytest.raises(TranscriptionError):
        to_mp3(tone_wav())  # not AMR either: refused rather than probed
    mp3 = to_mp3(tone_amr())
    assert mp3 is not None and (mp3[:3] == b"ID3" or mp3[0] == 0xFF)


@pytest.mark.parametrize(
    ("script", "says"),
    [("#!/bin/sh\nexec sleep 5\n", "more than 1 s"), (None, "could not run")],
)
def test_an_ffmpeg_that_hangs_or_cannot_run_is_a_failed_transcription(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str | None, says: str
) -> None:
    """Not an unexpected error (the follower would read that the AI failed): VOICE_FAILED's path."""
    binary = tmp_path / "ffmpeg"
    if script is not None:
        binary.write_text(script)
        binary.chmod(0o755)
    monkeypatch.setattr(voice, "ffmpeg_binary", lambda: str(binary))
    with pytest.raises(TranscriptionError, match=says):
        to_mp3(tone_amr(), timeout=1.0)
