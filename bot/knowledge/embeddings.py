"""Dense vectors through the OpenAI-compatible /v1/embeddings (EMBEDDING_MODEL at EMBEDDING_BASE_URL,
else OPENAI_BASE_URL), L2-normalised so that a dot product is the cosine similarity."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.lazy import LazyModule

if TYPE_CHECKING:
    import numpy as np
    import openai
else:  # imported on first use (bot/lazy.py)
    np = LazyModule("numpy")
    openai = LazyModule("openai")

log = logging.getLogger(__name__)

#: passages per request when indexing
BATCH = 32


class EmbeddingError(Exception):
    """The embedding server failed; retrieval goes on with BM25 alone."""


class Embedder:
    def __init__(self, settings: Settings) -> None:
        self.model = settings.embedding_model
        self.base_url = settings.embedding_base_url or settings.openai_base_url
        timeout = openai.Timeout(settings.embedding_timeout, connect=min(settings.embedding_timeout, 5.0))
        self.client = openai.OpenAI(
            api_key=settings.embedding_api_key or settings.openai_api_key or "EMPTY",
            base_url=self.base_url,
            timeout=timeout,
            max_retries=1,
        )

    def close(self) -> None:
        self.client.close()

    def embed(self, texts: list[str]) -> np.ndarray:
        """One normalised row per text (float32); EmbeddingError when the server fails."""
        rows = [self._request(texts[start : start + BATCH]) for start in range(0, len(texts), BATCH)]
        return np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    def embed_query(self, text: str, timeout: float | None = None) -> np.ndarray:
        """One question's vector, not retried; `timeout` (seconds) tightens EMBEDDING_TIMEOUT for a caller
        with a budget of its own (the knowledge-base tool's 1 s)."""
        return self._request([text], retries=0, timeout=timeout)[0]

    def _request(self, texts: list[str], retries: int = 1, timeout: float | None = None) -> np.ndarray:
        try:
            client = self.client.with_options(max_retries=retries)
            if timeout is not None:
                client = client.with_options(timeout=openai.Timeout(timeout, connect=timeout))
            result = client.embeddings.create(model=self.model, input=texts, encoding_format="float")
            ordered = sorted(result.data, key=lambda item: item.index)
            matrix = np.asarray([item.embedding for item in ordered], dtype=np.float32)
        except (openai.OpenAIError, ValueError, TypeError) as exc:
            where = f"EMBEDDING_MODEL {self.model!r} at {self.base_url}: check EMBEDDING_BASE_URL"
            raise EmbeddingError(f"{type(exc).__name__}: {exc} ({where})") from exc
        if matrix.ndim != 2 or len(matrix) != len(texts):
            raise EmbeddingError(f"expected {len(texts)} vectors, got {matrix.shape}")
        return normalise(matrix)


def normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)
