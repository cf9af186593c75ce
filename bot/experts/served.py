"""Which models the backend serves, as this process last asked: an expert whose model is not served is
not asked (the answer goes to the default model instead).

FastChat: the controller's `/list_models` (the names each worker registered, `--model-names`);
OpenAI-compatible servers: `/v1/models` (vLLM lists the base model and each `--lora-modules` adapter).
The list is kept SERVED_TTL seconds, so a worker that comes up or goes away counts within that time.
When the listing fails, every expert is trusted for FAILED_TTL seconds (not asked again meanwhile): the
answer's own request then reaches its model or fails with the usual error for the user — a failed
listing usually means the backend is down for the answer too, and a default model would not help.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: seconds a model list is reused
SERVED_TTL = 30.0
#: seconds after a failed listing before the backend is asked again (the experts trusted meanwhile)
FAILED_TTL = 5.0


class ServedModels:
    """`serves(model)`: True or False from the backend's list, None when the list cannot be had."""

    def __init__(self, listing: Callable[[], list[str]], clock: Callable[[], float] = time.monotonic) -> None:
        self.listing = listing
        self.clock = clock
        self._lock = threading.Lock()
        #: (the models, or None after a failure; valid until)
        self._known: tuple[frozenset[str] | None, float] | None = None

    def serves(self, model: str) -> bool | None:
        models = self.models()
        return None if models is None else model in models

    def models(self) -> frozenset[str] | None:
        with self._lock:
            known = self._known
        if known is not None and self.clock() < known[1]:
            return known[0]
        models = self._list()
        ttl = SERVED_TTL if models is not None else FAILED_TTL
        with self._lock:
            self._known = (models, self.clock() + ttl)
        return models

    def _list(self) -> frozenset[str] | None:
        """Another thread may list at the same moment: both answers are the backend's, either will do."""
        try:
            return frozenset(self.listing())
        except Exception as exc:  # LLMError, or a bug: routing never costs the answer
            log.warning("experts: the backend's models could not be listed (%s); trusting EXPERTS", exc)
            return None
