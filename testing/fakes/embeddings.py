"""FakeEmbeddings: a loopback OpenAI-compatible /v1/embeddings (base URL `fake.base_url`) for the
knowledge base's dense retrieval, with deterministic vectors.

A vector is a hashed bag of character unigrams and bigrams (CJK) and lower-cased words (other
scripts), weighted 1 + log(count), L2-normalised: texts that share characters are close, texts that
share none are orthogonal. Not a language model — no synonyms, no paraphrase — but it ranks
differently from BM25 over jieba's words (characters, not words), which is what fusion is tested on.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import socket
import threading
from collections import Counter
from typing import Any

import numpy as np

from testing.fakes.base import FakeHandler, FakeServer, RecordedRequest

DIMENSIONS = 256
_CJK = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[0-9a-z]+")


def features(text: str) -> Counter[str]:
    text = text.lower()
    counts: Counter[str] = Counter()
    for run in _CJK.findall(text):
        counts.update(run)
        counts.update(run[i : i + 2] for i in range(len(run) - 1))
    counts.update(_WORD.findall(text))
    return counts


def fake_vector(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    vector = [0.0] * dimensions
    for feature, count in features(text).items():
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        sign = 1.0 if digest[4] & 1 else -1.0
        vector[slot] += sign * (1 + math.log(count))
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


class FakeEmbeddings(FakeServer):
    """POST /v1/embeddings. Knobs: `fail_status` (answer that HTTP status), `dimensions`."""

    def __init__(self, dimensions: int = DIMENSIONS) -> None:
        super().__init__()
        self.dimensions = dimensions
        self.fail_status: int | None = None
        self._lock = threading.Lock()
        self._inputs: list[str] = []

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def inputs(self) -> list[str]:
        """Every text embedded so far, in order."""
        with self._lock:
            return list(self._inputs)

    def handle(self, handler: FakeHandler, request: RecordedRequest) -> None:
        # the answer's head and body are two writes: without this, Nagle's algorithm and the client's
        # delayed ACK add ~40 ms to every answer, which a real server does not (the benchmark times it)
        handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if (request.method, request.path) != ("POST", "/v1/embeddings"):
            handler.send_json({"error": {"message": f"Unknown url {request.path}"}}, status=404)
            return
        if self.fail_status is not None:
            error = {"message": "fake failure", "type": "server_error", "param": None, "code": None}
            handler.send_json({"error": error}, status=self.fail_status)
            return
        data = request.json if isinstance(request.json, dict) else {}
        texts = data.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            error = {
                "message": "input must be a string or a list of strings",
                "type": "invalid_request_error",
            }
            handler.send_json({"error": error}, status=400)
            return
        with self._lock:
            self._inputs.extend(texts)
        handler.send_json(self._answer(texts, str(data.get("model", "")), data.get("encoding_format")))

    def _answer(self, texts: list[str], model: str, encoding: Any) -> dict[str, Any]:
        rows = []
        for index, text in enumerate(texts):
            vector = fake_vector(text, self.dimensions)
            embedding: Any = vector
            if encoding == "base64":
                embedding = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
            rows.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(text) for text in texts)
        return {
            "object": "list",
            "data": rows,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
