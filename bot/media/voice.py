"""Voice messages without WeChat's `Recognition`: download the audio and transcribe it ourselves.

WeChat sends AMR, which the OpenAI audio API does not accept: we convert it to MP3 with the
ffmpeg binary that the `imageio-ffmpeg` wheel ships (or the system's), then transcribe it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.lazy import LazyModule
from bot.llm.openai_backend import make_client
from bot.wechat.api import WeChatAPI, WeChatAPIError

if TYPE_CHECKING:
    import openai
else:  # imported on first use (bot/lazy.py): 40 MiB that a process which never calls the API does not load
    openai = LazyModule("openai")

log = logging.getLogger(__name__)


class TranscriptionError(Exception):
    """The voice could not be made text. `empty`: it was, and said nothing (not a failure of the
    service: the user reads that the voice was not understood)."""

    def __init__(self, message: str, *, empty: bool = False) -> None:
        super().__init__(message)
        self.empty = empty


def ffmpeg_binary() -> str | None:
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


#: WeChat's voice messages (and their media downloads) are AMR
VOICE_FORMAT = "amr"


def to_mp3(audio: bytes, timeout: float = 30.0, input_format: str = VOICE_FORMAT) -> bytes | None:
    """MP3 of a voice message; None when there is no ffmpeg.

    The input format is given, not guessed, and ffmpeg may open nothing but its pipes: the audio
    comes from outside, and a file that ffmpeg's probing took for a playlist could make it read
    local files or URLs."""
    binary = ffmpeg_binary()
    if binary is None:
        return None
    command = [binary, "-hide_banner", "-loglevel", "error", "-nostdin", "-protocol_whitelist", "pipe"]
    command += ["-f", input_format, "-i", "pipe:0", "-f", "mp3", "pipe:1"]
    try:
        result = subprocess.run(command, input=audio, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TranscriptionError(f"ffmpeg took more than {timeout:.0f} s to convert the audio") from exc
    except OSError as exc:  # the binary vanished or cannot run: the follower reads VOICE_FAILED
        raise TranscriptionError(f"ffmpeg could not run: {exc}") from exc
    if result.returncode != 0 or not result.stdout:
        raise TranscriptionError(f"ffmpeg could not convert the audio: {result.stderr[-300:]!r}")
    return result.stdout


class Transcriber:
    def __init__(self, settings: Settings, api: WeChatAPI, client: openai.OpenAI | None = None) -> None:
        self.api = api
        self.client = client or make_client(settings)
        self.model = settings.openai_transcribe_model

    def close(self) -> None:
        self.client.close()

    def transcribe_media(self, media_id: str) -> str:
        """The text of a voice message, from its WeChat media id."""
        try:
            audio = self.api.download_media(media_id)
        except WeChatAPIError as exc:
            raise TranscriptionError(f"cannot download the voice message: {exc}") from exc
        mp3 = to_mp3(audio)
        upload = ("voice.mp3", mp3) if mp3 is not None else ("voice.amr", audio)
        try:
            result = self.client.audio.transcriptions.create(model=self.model, file=upload)
        except openai.OpenAIError as exc:
            raise TranscriptionError(f"transcription failed: {exc}") from exc
        return str(getattr(result, "text", "") or "").strip()
