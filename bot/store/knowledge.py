"""The knowledge base in Redis: every document's record, passages and vectors, a version counter, and
the state of the account's article sync. The one owner of the `wxbot:kb:*` keys.

Shared by every process and machine: a document is written (or removed) together with a bump of the
version in one MULTI, so a process that reads the version and then the documents never sees half a
change, and each process rebuilds its in-memory index (bot/knowledge/index.py) only when the version
moved — one GET per question otherwise.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import redis

from bot.store import keys

#: renews the sync lock only while it is still ours. KEYS: lock. ARGV: token, ttl.
RENEW_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
#: releases the sync lock only while it is still ours. KEYS: lock. ARGV: token.
RELEASE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
#: takes the sync lock when it is free or already ours (a redelivered job). KEYS: lock. ARGV: token, ttl.
TAKE_IF_FREE_OR_OURS = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    return 1
end
return 0
"""

#: stores a document's passages tokenized again, and its record saying by which tokenizer, only while
#: the document is the one that was read (its rev). KEYS: documents, passages. ARGV: id, rev, passages,
#: record.
RETOKENIZED_IF_SAME = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw or cjson.decode(raw).rev ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class DocumentRecord:
    """What the knowledge base knows of one document (the passages are stored apart)."""

    id: str
    title: str
    #: "file" (make kb-add) or "wechat" (the account's articles, /kb sync)
    source: str
    #: what identifies it at its source: the file's name, or the article ("freepublish:ID:0")
    key: str
    #: what changes when the document changes (an article's update_time and a digest of its content)
    version: str
    chunks: int
    added: float
    updated: float
    #: a link to the document (an article's URL), or ""
    url: str = ""
    #: the file's name (files) or the article's author
    name: str = ""
    #: the model whose vectors are stored for its passages ("" when none)
    embedding: str = ""
    #: changes with every write, so that each process reloads exactly the documents that changed
    rev: str = ""
    #: the tokenizer that made its passages' stored words (bot/knowledge/tokens.py TOKENIZER; 1 for a
    #: document stored before it was recorded)
    tokenizer: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> DocumentRecord:
        data = json.loads(raw)
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


class KnowledgeStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._renew = client.register_script(RENEW_IF_OURS)
        self._release = client.register_script(RELEASE_IF_OURS)
        self._take = client.register_script(TAKE_IF_FREE_OR_OURS)
        self._retokenized = client.register_script(RETOKENIZED_IF_SAME)

    # --- documents ------------------------------------------------------------------------
    def version(self) -> int:
        return int(self.redis.get(keys.KB_VERSION) or 0)

    def count(self) -> int:
        return int(self.redis.hlen(keys.KB_DOCUMENTS))

    def documents(self) -> dict[str, DocumentRecord]:
        raw = self.redis.hgetall(keys.KB_DOCUMENTS)
        return {str(doc_id): DocumentRecord.from_json(str(value)) for doc_id, value in raw.items()}

    def document(self, doc_id: str) -> DocumentRecord | None:
        raw = self.redis.hget(keys.KB_DOCUMENTS, doc_id)
        return None if raw is None else DocumentRecord.from_json(str(raw))

    def passages(self, doc_ids: list[str]) -> list[str | None]:
        """The raw JSON of each document's passages (None for one removed meanwhile)."""
        if not doc_ids:
            return []
        found = self.redis.mget([keys.kb_passages(doc_id) for doc_id in doc_ids])
        return [None if item is None else str(item) for item in found]

    def vectors(self, doc_ids: list[str]) -> list[str | None]:
        """The base64 vectors of each document's passages (None where there are none)."""
        if not doc_ids:
            return []
        found = self.redis.mget([keys.kb_vectors(doc_id) for doc_id in doc_ids])
        return [None if item is None else str(item) for item in found]

    def put(self, record: DocumentRecord, passages: str, vectors: str | None) -> None:
        """Add or replace a document, its passages and vectors, and bump the version, atomically."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.kb_passages(record.id), passages)
        if vectors is None:
            pipe.delete(keys.kb_vectors(record.id))
        else:
            pipe.set(keys.kb_vectors(record.id), vectors)
        pipe.hset(keys.KB_DOCUMENTS, record.id, record.to_json())
        pipe.incr(keys.KB_VERSION)
        pipe.execute()

    def retokenized(self, record: DocumentRecord, passages: str) -> bool:
        """Store a document's passages with their words made again by another tokenizer (`record` says
        which), unless the document was replaced or removed since `record.rev` was read. The version
        does not move: every process that loaded this rev made the same words from its text."""
        found = self._retokenized(
            keys=[keys.KB_DOCUMENTS, keys.kb_passages(record.id)],
            args=[record.id, record.rev, passages, record.to_json()],
        )
        return bool(found)

    def remove(self, doc_id: str) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(keys.KB_DOCUMENTS, doc_id)
        pipe.delete(keys.kb_passages(doc_id), keys.kb_vectors(doc_id))
        pipe.incr(keys.KB_VERSION)
        return bool(pipe.execute()[0])

    # --- the sync of the account's articles -----------------------------------------------
    def claim_sync(self, token: str) -> bool:
        """Take the sync lock for a new sync; False while another one runs."""
        return bool(self.redis.set(keys.KB_SYNC_LOCK, token, nx=True, ex=keys.KB_SYNC_LOCK_TTL))

    def take_sync(self, token: str) -> bool:
        """The job of a claimed sync takes the lock: free (it expired while the job was queued) or ours
        (claimed by the command, or a redelivered job)."""
        return bool(self._take(keys=[keys.KB_SYNC_LOCK], args=[token, keys.KB_SYNC_LOCK_TTL]))

    def renew_sync(self, token: str) -> bool:
        return bool(self._renew(keys=[keys.KB_SYNC_LOCK], args=[token, keys.KB_SYNC_LOCK_TTL]))

    def release_sync(self, token: str) -> None:
        self._release(keys=[keys.KB_SYNC_LOCK], args=[token])

    def sync_running(self) -> bool:
        return bool(self.redis.exists(keys.KB_SYNC_LOCK))

    def save_sync(self, **fields: str | float | int) -> None:
        self.redis.hset(keys.KB_SYNC, mapping={name: str(value) for name, value in fields.items()})

    def start_sync_record(self, by: str) -> None:
        """A new sync starts: the previous one's record is replaced."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.KB_SYNC)
        pipe.hset(keys.KB_SYNC, mapping={"status": "running", "started": str(time.time()), "by": by})
        pipe.execute()

    def sync_record(self) -> dict[str, str]:
        return {str(name): str(value) for name, value in self.redis.hgetall(keys.KB_SYNC).items()}
