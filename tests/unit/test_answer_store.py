"""The answer store's reads stay bounded whatever a user piles up."""

from __future__ import annotations

import redis

from bot.store.answers import OWED_SCAN, Answer, AnswerStore


def test_a_message_reads_a_bounded_number_of_owed_answers(redis_client: redis.Redis) -> None:
    """With the rate limit off a user can pile up questions; each message still reads only OWED_SCAN."""
    store = AnswerStore(redis_client, ttl=3600)
    ids = [store.create("u", f"q{n}", owner=f"p{n}", reserved_for=0, delivery="passive") for n in range(50)]
    reads: list[str] = []
    original = store.get

    def counting_get(answer_id: str) -> Answer | None:
        reads.append(answer_id)
        return original(answer_id)

    store.get = counting_get  # type: ignore[method-assign]
    target = store.next_target("u", "another-push", include_current=False)
    assert target is not None and target.answer.id == ids[0]
    assert len(reads) == OWED_SCAN
