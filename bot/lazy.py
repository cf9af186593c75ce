"""Heavy libraries imported on first use, not when the module that uses them is imported.

Every web and job process imports the knowledge base and the media modules (the runtime holds them), but
only a process that searches or adds documents needs numpy, bm25s or jieba (about 45 MiB together), and
only one that calls an OpenAI-compatible API needs the `openai` SDK (about 40 MiB): a web process that
does neither stays small. `LazyModule` stands for such a module until one of its attributes is read; for
type checking, the modules import them as usual under `TYPE_CHECKING`.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

from bot import heap


class LazyModule:
    """The module `name`, imported (once, under a lock) when an attribute is first read. `setup` runs on
    it right after; `quiet` silences the warnings its import may print."""

    def __init__(
        self, name: str, setup: Callable[[ModuleType], None] | None = None, quiet: bool = False
    ) -> None:
        self._name = name
        self._setup = setup
        self._quiet = quiet
        self._lock = threading.Lock()
        self._module: ModuleType | None = None

    def _load(self) -> ModuleType:
        loaded = False
        with self._lock:
            if self._module is None:
                with warnings.catch_warnings():
                    if self._quiet:
                        warnings.simplefilter("ignore")
                    module = importlib.import_module(self._name)
                if self._setup is not None:
                    self._setup(module)
                self._module, loaded = module, True
        if loaded:  # outside the lock: nothing the collection finalises can wait on it
            heap.settle()  # the library's tables join what the process is built from
        return self._module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._module or self._load(), attr)
