"""The optional second step of routing: a short request to a small model (EXPERT_CLASSIFIER_MODEL) that
names the question's task, when the rules cannot tell.

It is made to cost little and to fail safe: the question only (no history), cut to QUESTION_CHARS; a
few tokens of answer at temperature 0; EXPERT_CLASSIFIER_TIMEOUT for the whole request (connect, send,
answer) and no retry. The answer must be exactly one of the tasks offered (spaces and punctuation
aside): anything else — 其他, a sentence, a task EXPERTS does not name, an error, the timeout — is
"unclear", and the question goes to the default model. It is called through the OpenAI API
(EXPERT_CLASSIFIER_BASE_URL, else OPENAI_BASE_URL): vLLM, FastChat's openai_api_server or any
compatible server; a non-reasoning model, since a model that thinks first would not answer in time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot import texts
from bot.config import Settings
from bot.lazy import LazyModule

if TYPE_CHECKING:
    import openai
else:  # imported on first use (bot/lazy.py): 40 MiB that a process which never calls the API does not load
    openai = LazyModule("openai")

log = logging.getLogger(__name__)

#: the question is cut to this many characters (the task shows in its first lines)
QUESTION_CHARS = 500
#: a task's name is two characters: one to three tokens each, and some room for a stray space
MAX_TOKENS = 8
_NOT_A_LETTER = re.compile(r"[\W_]+")


def make_client(settings: Settings) -> openai.OpenAI:
    timeout = settings.expert_classifier_timeout
    return openai.OpenAI(
        api_key=settings.openai_api_key or "EMPTY",
        base_url=settings.expert_classifier_base_url or settings.openai_base_url,
        timeout=openai.Timeout(timeout, connect=timeout),
        max_retries=0,
    )


def task_named(answer: str, tasks: Sequence[str]) -> str | None:
    """The task the answer names, when it is exactly one of `tasks` (spaces and punctuation aside)."""
    name = _NOT_A_LETTER.sub("", answer)
    return name if name in tasks else None


class Classifier:
    def __init__(self, settings: Settings, client: openai.OpenAI | None = None) -> None:
        self.model = settings.expert_classifier_model
        self.timeout = settings.expert_classifier_timeout
        self.client = client or make_client(settings)

    def task(self, question: str, tasks: Sequence[str]) -> str | None:
        """One of `tasks`, or None (unclear, or the classifier failed or was too slow: logged). Whatever
        the classifier's server sends (an HTML page with status 200, a message without content) leaves
        the question unclear: the router's default answers it, never the failure sentence."""
        try:
            completion = self.client.chat.completions.create(
                model=self.model,
                messages=self.messages(question, tasks),  # type: ignore[arg-type]
                max_tokens=MAX_TOKENS,
                temperature=0,
            )
            answer = completion.choices[0].message.content if completion.choices else None
        except openai.APITimeoutError:
            log.warning("experts: classifier %s gave no answer within %ss", self.model, self.timeout)
            return None
        except Exception as exc:  # openai's errors, and an answer of another shape than a completion
            log.warning("experts: classifier %s failed: %s", self.model, exc)
            return None
        return task_named(answer or "", tasks)

    @staticmethod
    def messages(question: str, tasks: Sequence[str]) -> list[dict[str, str]]:
        lines = "\n".join(
            texts.EXPERT_TASK_LINE.format(task=task, meaning=texts.EXPERT_TASK_MEANINGS.get(task, ""))
            for task in tasks
        )
        return [
            {"role": "system", "content": texts.EXPERT_CLASSIFIER_SYSTEM.format(tasks=lines)},
            {"role": "user", "content": question[:QUESTION_CHARS]},
        ]

    def close(self) -> None:
        self.client.close()
