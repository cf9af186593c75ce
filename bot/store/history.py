"""Each user's conversation in Redis, in OpenAI message format, trimmed by turns and characters."""

from __future__ import annotations

import json

import redis
from redis.client import Pipeline

from bot.llm import ChatMessage
from bot.store import keys


class History:
    def __init__(self, client: redis.Redis, *, max_turns: int, max_chars: int, ttl: int) -> None:
        self.redis = client
        self.max_turns = max_turns
        self.max_chars = max_chars
        self.ttl = ttl

    def messages(self, openid: str) -> list[ChatMessage]:
        raw = self.redis.lrange(keys.history(openid), 0, -1)
        return [json.loads(item) for item in raw]

    def add_turn(self, openid: str, question: str, answer: str) -> None:
        """Append a question and its answer together, so the history never holds half a turn."""
        pipe = self.redis.pipeline()
        self.add_turn_in(pipe, openid, question, answer)
        pipe.execute()

    def add_turn_in(self, pipe: Pipeline, openid: str, question: str, answer: str) -> None:
        """`add_turn`, queued in the caller's pipeline (the end of an answer: one round trip with its
        metrics). The turn is one RPUSH: never half of it, even in a pipeline without MULTI."""
        turn = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        pipe.rpush(keys.history(openid), *(json.dumps(item, ensure_ascii=False) for item in turn))
        pipe.ltrim(keys.history(openid), -2 * max(self.max_turns, 1), -1)
        pipe.expire(keys.history(openid), self.ttl)

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
