"""Each user's conversation in Redis, in OpenAI message format, trimmed by turns and characters.

Turns are kept in the order of their questions, not of their answers: two questions sent in a burst are
answered at once, and the second one's answer often ends first. Each question carries the time it was
asked (`at`, the answer's creation), and a turn goes in before the turns of questions asked after it."""

from __future__ import annotations

import json

import redis
from redis.client import Pipeline

from bot.llm import ChatMessage
from bot.store import keys

#: KEYS[1]: the history. ARGV: the question's time, the question's and the answer's JSON, the messages
#: kept, the key's lifetime. The list holds whole turns (a question, then its answer): walking back two
#: by two over the turns of later questions finds the place of this one; a question without `at` (kept
#: from before it was recorded) counts as earlier than any.
ADD_TURN = """
local at = tonumber(ARGV[1])
local count = redis.call('LLEN', KEYS[1])
local place = count
while place >= 2 do
    local ok, earlier = pcall(cjson.decode, redis.call('LINDEX', KEYS[1], place - 2))
    local asked = ok and type(earlier) == 'table' and tonumber(earlier['at'])
    if not asked or asked <= at then break end
    place = place - 2
end
local later = {}
if place < count then
    later = redis.call('LRANGE', KEYS[1], place, -1)
    if place == 0 then  -- LTRIM 0 -1 would keep everything
        redis.call('DEL', KEYS[1])
    else
        redis.call('LTRIM', KEYS[1], 0, place - 1)
    end
end
redis.call('RPUSH', KEYS[1], ARGV[2], ARGV[3], unpack(later))
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[4]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class History:
    def __init__(self, client: redis.Redis, *, max_turns: int, max_chars: int, ttl: int) -> None:
        self.redis = client
        self.max_turns = max_turns
        self.max_chars = max_chars
        self.ttl = ttl

    def messages(self, openid: str) -> list[ChatMessage]:
        """The conversation as the model reads it (without the questions' times)."""
        raw = self.redis.lrange(keys.history(openid), 0, -1)
        return [_message(json.loads(item)) for item in raw]

    def add_turn(self, openid: str, question: str, answer: str, asked: float) -> None:
        """A question (asked at `asked`, a Unix time) and its answer together, so the history never holds
        half a turn, in its place among the turns of questions asked after it."""
        pipe = self.redis.pipeline()
        self.add_turn_in(pipe, openid, question, answer, asked)
        pipe.execute()

    def add_turn_in(self, pipe: Pipeline, openid: str, question: str, answer: str, asked: float) -> None:
        """`add_turn`, queued in the caller's pipeline (the end of an answer: one round trip with its
        metrics). One script: never half a turn, even in a pipeline without MULTI."""
        user = json.dumps({"role": "user", "content": question, "at": asked}, ensure_ascii=False)
        assistant = json.dumps({"role": "assistant", "content": answer}, ensure_ascii=False)
        kept = 2 * max(self.max_turns, 1)
        # EVAL with its source, not the registered script: a Script in a pipeline makes redis-py ask
        # SCRIPT EXISTS first, a round trip of its own at every answer's end (as Metrics.inc_in does)
        pipe.eval(ADD_TURN, 1, keys.history(openid), asked, user, assistant, kept, self.ttl)

    def pipeline(self) -> Pipeline:
        """A pipeline (no MULTI) in which several stores queue the writes that end an answer."""
        return self.redis.pipeline(transaction=False)

    def clear_in(self, pipe: Pipeline, openid: str) -> None:
        """Forget the conversation, queued in the caller's pipeline (a reset: one round trip with the
        photo's)."""
        pipe.delete(keys.history(openid))

    def prompt(self, openid: str, system: str, question: str) -> list[ChatMessage]:
        """System prompt + as many recent turns as fit the character budget + the question."""
        turns = self.messages(openid) if self.max_turns else []
        budget = self.max_chars - len(system) - len(question)
        kept: list[ChatMessage] = []
        for index in range(len(turns) - 2, -1, -2):
            pair = turns[index : index + 2]
            size = sum(len(item.get("content", "")) for item in pair)
            if size > budget:
                break
            kept[:0] = pair
            budget -= size
        head: list[ChatMessage] = [{"role": "system", "content": system}] if system else []
        return head + kept + [{"role": "user", "content": question}]


def _message(item: ChatMessage) -> ChatMessage:
    """A stored message without the question's time (`at`), which no chat API expects."""
    item.pop("at", None)
    return item
