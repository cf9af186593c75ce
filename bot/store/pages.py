"""Answer pages: the unguessable token that opens an answer's page, and the answer as its page shows
it while it is being written (the model's Markdown so far, its thinking, its sources, its state).

A token is 144 random bits (`secrets`), not derived from the answer id, and lives exactly as long as
the answer (its remaining TTL). The live record is written by the generation run that holds the
answer's lease (a run that lost it writes nothing), whole each time, so a restarted run simply
writes it anew.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

import redis
from redis.typing import EncodableT

from bot.store import keys
from bot.store.answers import TERMINAL

#: random bytes of a page token (144 bits; URL-safe base64 makes 24 characters)
TOKEN_BYTES = 18
TOKEN_LENGTH = 24

#: KEYS: answer, answer_page, page_token(candidate). ARGV: candidate token, answer id.
#: The existing token, else the candidate (stored both ways, expiring with the answer); nil: no answer.
TOKEN_FOR = """
local existing = redis.call('GET', KEYS[2])
if existing then return existing end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return false end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
redis.call('SET', KEYS[3], ARGV[2], 'PX', ttl)
return ARGV[1]
"""

#: KEYS: lease, live, answer. ARGV: lease token, field, value, field, value…
#: Written only while the lease holds; the version counts the writes; expires with the answer.
LIVE_WRITE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
redis.call('HINCRBY', KEYS[2], 'version', 1)
local ttl = redis.call('PTTL', KEYS[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""


@dataclass(frozen=True)
class Source:
    """Where an answer's knowledge came from (the knowledge base), listed on its page."""

    title: str
    url: str = ""


@dataclass(frozen=True)
class LiveAnswer:
    """The answer as its page shows it. `state`: queued (no run has started), thinking, writing, done,
    failed."""

    text: str = ""
    reasoning: str = ""
    state: str = "queued"
    error: str = ""
    sources: list[Source] = field(default_factory=list)
    version: int = 0

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


class PageStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._token_for = client.register_script(TOKEN_FOR)
        self._live_write = client.register_script(LIVE_WRITE)

    # --- tokens -----------------------------------------------------------------------------
    def token_for(self, answer_id: str) -> str | None:
        """The answer's page token (made on first use); None when the answer no longer exists."""
        candidate = secrets.token_urlsafe(TOKEN_BYTES)
        found = self._token_for(
            keys=[keys.answer(answer_id), keys.answer_page(answer_id), keys.page_token(candidate)],
            args=[candidate, answer_id],
        )
        return str(found) if found else None

    def answer_of(self, token: str) -> str | None:
        """The id of the answer a token opens, or None (unknown or expired)."""
        if len(token) != TOKEN_LENGTH:
            return None
        found = self.redis.get(keys.page_token(token))
        return str(found) if found else None

    # --- the live record ----------------------------------------------------------------------
    def write(self, answer_id: str, lease: str, **fields: str | list[Source]) -> bool:
        """Set some fields of the live record, as the run holding `lease`; False when it no longer does."""
        args: list[EncodableT] = [lease]
        for name, value in fields.items():
            args += [name, _encode(value)]
        keys_ = [keys.answer_lease(answer_id), keys.answer_live(answer_id), keys.answer(answer_id)]
        return bool(self._live_write(keys=keys_, args=args))

    def live(self, answer_id: str) -> LiveAnswer:
        data: dict[str, str] = self.redis.hgetall(keys.answer_live(answer_id))  # type: ignore[assignment]
        if not data:
            return LiveAnswer()
        return LiveAnswer(
            text=data.get("text", ""),
            reasoning=data.get("reasoning", ""),
            state=data.get("state", "queued"),
            error=data.get("error", ""),
            sources=_sources(data.get("sources", "")),
            version=int(data.get("version", 0)),
        )

    def progress(self, answer_id: str) -> tuple[int, bool]:
        """What a page's poll needs, in one round trip: how many times the live record was written (0:
        never; a poll that saw this one has it all), and whether the answer ended while its live record
        still says it is being written (it failed outside its run: abandoned, or its run was killed)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(keys.answer_live(answer_id), ["version", "state"])
        pipe.hget(keys.answer(answer_id), "status")
        (version, state), status = pipe.execute()
        return int(version or 0), status in TERMINAL and state not in TERMINAL


def _encode(value: str | list[Source]) -> str:
    if isinstance(value, str):
        return value
    return json.dumps([{"title": item.title, "url": item.url} for item in value], ensure_ascii=False)


def _sources(raw: str) -> list[Source]:
    try:
        items = json.loads(raw) if raw else []
    except ValueError:
        return []
    found = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("title"):
            found.append(Source(str(item["title"]), str(item.get("url") or "")))
    return found
