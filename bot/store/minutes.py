"""Meeting minutes (/minutes) being recorded: whether a user is recording, the pieces in order, and
how many voice pieces are still being transcribed. One owner for the `minutes*` keys.

Every meeting has an id, made by `start`. A voice piece's job carries the id of its meeting, and so
does the answer that writes the minutes; what they write goes through a compare-and-set (a Lua
script) that does nothing when the user's meeting is no longer theirs (restarted, written, expired),
so a late piece can neither overwrite a piece of a newer meeting nor miscount its pending pieces.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import redis

from bot import texts
from bot.store import keys

#: a piece, atomically, only while recording; every key of the meeting gets its expiry again.
#: KEYS: on, meeting, pieces, pending. ARGV: ttl, the piece, "1" when it is a voice piece to transcribe.
#: Returns {number of the piece (1-based), meeting id}, or nil when not recording.
ADD_PIECE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local meeting = redis.call('GET', KEYS[2])
if not meeting then return false end
local count = redis.call('RPUSH', KEYS[3], ARGV[2])
if ARGV[3] == '1' then redis.call('INCR', KEYS[4]) end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[1]) end
return {count, meeting}
"""

#: a voice piece's transcript takes its place only while the meeting is the piece's own and the place
#: still holds the placeholder (so a retried job does not count twice); pending never goes below 0.
#: KEYS: meeting, pieces, pending. ARGV: meeting id, index (0-based), transcript, placeholder.
#: Returns 1 when written, 0 when the piece is stale.
FILL_VOICE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local index = tonumber(ARGV[2])
if redis.call('LINDEX', KEYS[2], index) ~= ARGV[4] then return 0 end
redis.call('LSET', KEYS[2], index, ARGV[3])
if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then redis.call('DECR', KEYS[3]) end
return 1
"""

#: forget the meeting, only if it is still this one. KEYS: meeting, pieces, pending. ARGV: meeting id.
CLEAR = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
"""

#: recording on again, only if the meeting is still this one and has pieces.
#: KEYS: on, meeting, pieces, pending. ARGV: meeting id, ttl.
RESUME = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] or redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Piece:
    """A piece just recorded: its number (1-based) and the id of its meeting."""

    number: int
    meeting: str

    @property
    def index(self) -> int:
        return self.number - 1


class MinutesStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._add_piece = client.register_script(ADD_PIECE)
        self._fill_voice = client.register_script(FILL_VOICE)
        self._clear = client.register_script(CLEAR)
        self._resume = client.register_script(RESUME)

    def _keys(self, openid: str) -> list[str]:
        return [
            keys.minutes_on(openid),
            keys.minutes_meeting(openid),
            keys.minutes(openid),
            keys.minutes_pending(openid),
        ]

    def start(self, openid: str) -> str:
        """A new meeting: forget any earlier pieces (their late transcripts will change nothing). Its id."""
        meeting = secrets.token_hex(8)
        pipe = self.redis.pipeline()
        pipe.delete(keys.minutes(openid), keys.minutes_pending(openid))
        pipe.set(keys.minutes_meeting(openid), meeting, ex=keys.MINUTES_TTL)
        pipe.set(keys.minutes_on(openid), "1", ex=keys.MINUTES_TTL)
        pipe.execute()
        return meeting

    def recording(self, openid: str) -> bool:
        return bool(self.redis.exists(keys.minutes_on(openid)))

    def stop(self, openid: str) -> str | None:
        """End the recording: the id of the meeting, whose minutes are to be written; None when none was
        on."""
        pipe = self.redis.pipeline()
        pipe.delete(keys.minutes_on(openid))
        pipe.get(keys.minutes_meeting(openid))
        stopped, meeting = pipe.execute()
        return str(meeting or "") if stopped else None

    def resume(self, openid: str, meeting: str) -> bool:
        """Recording on again after the minutes could not be written (so /minutes end can retry); False
        when the meeting has no pieces or is no longer the user's."""
        return bool(self._resume(keys=self._keys(openid), args=[meeting, keys.MINUTES_TTL]))

    def add_text(self, openid: str, text: str) -> Piece | None:
        """Append a piece; None when the user is not recording (any more)."""
        return self._add(openid, text, voice=False)

    def add_pending_voice(self, openid: str) -> Piece | None:
        """Keep the place of a voice piece that is being transcribed; None when not recording."""
        return self._add(openid, texts.MINUTES_TRANSCRIBING, voice=True)

    def _add(self, openid: str, piece: str, *, voice: bool) -> Piece | None:
        args: list[str | int] = [keys.MINUTES_TTL, piece, "1" if voice else "0"]
        found = self._add_piece(keys=self._keys(openid), args=args)
        return None if found is None else Piece(int(found[0]), str(found[1]))

    def awaits(self, openid: str, meeting: str, index: int) -> bool:
        """Whether the voice piece at `index` of `meeting` is still waiting for its transcript (False:
        the meeting was restarted, written or forgotten, or the piece is filled)."""
        pipe = self.redis.pipeline()
        pipe.get(keys.minutes_meeting(openid))
        pipe.lindex(keys.minutes(openid), index)
        current, piece = pipe.execute()
        return current == meeting and piece == texts.MINUTES_TRANSCRIBING

    def fill_voice(self, openid: str, meeting: str, index: int, text: str) -> bool:
        """The transcript of the voice piece at `index` (0-based) of `meeting` takes its place; False (and
        nothing changed) when the piece is stale."""
        return bool(
            self._fill_voice(
                keys=self._keys(openid)[1:],
                args=[meeting, index, text, texts.MINUTES_TRANSCRIBING],
            )
        )

    def pending(self, openid: str, meeting: str) -> int:
        """Voice pieces of `meeting` still being transcribed (0 when it is no longer the user's)."""
        current, pending = self.redis.mget(keys.minutes_meeting(openid), keys.minutes_pending(openid))
        return max(int(pending or 0), 0) if current == meeting else 0

    def pieces(self, openid: str, meeting: str) -> list[str]:
        """The pieces of `meeting`, in order ([] when it is no longer the user's)."""
        pipe = self.redis.pipeline()
        pipe.get(keys.minutes_meeting(openid))
        pipe.lrange(keys.minutes(openid), 0, -1)
        current, pieces = pipe.execute()
        return [str(piece) for piece in pieces] if current == meeting else []

    def clear(self, openid: str, meeting: str) -> None:
        """The minutes of `meeting` are written: its recording is no longer needed (a newer meeting of
        the user is left alone)."""
        self._clear(keys=self._keys(openid)[1:], args=[meeting])
