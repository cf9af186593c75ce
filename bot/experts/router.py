"""Which model answers a question (EXPERTS): the follower's own choice, else the expert for its task.

In this order, the first that applies:

1. a follower's `/model NAME` choice (bot/store/users.py ModelChoices) — `user`;
2. (a question about a photo keeps VISION_MODEL: the caller does not ask the router — `vision`);
3. the rules (rules.py: words and the knowledge base's hit, about 0.1 ms) — `rule`;
4. the classifier (classifier.py, EXPERT_CLASSIFIER_MODEL, at most EXPERT_CLASSIFIER_TIMEOUT) — `classifier`;
5. otherwise the default model — `unclear`.

An expert whose model the backend does not list (served.py) is not asked: the default model answers,
and the answer's log line says so — `fallback`. Each routed answer is one log line and one count of
`answers_by_expert` (by expert, model and reason), shown in /stats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from bot.config import Settings
from bot.experts.classifier import Classifier
from bot.experts.rules import Rules
from bot.experts.served import ServedModels
from bot.store.metrics import Metrics

log = logging.getLogger(__name__)

Reason = Literal["user", "vision", "rule", "classifier", "unclear", "fallback"]


@dataclass(frozen=True)
class Route:
    """The model an answer is asked of: `task` the expert's task ("" for none), `reason` why; for a
    fallback, `wanted` the expert's model that is not served."""

    task: str
    model: str
    reason: Reason
    wanted: str = ""


class ExpertRouter:
    """Built once per process (bot/runtime.py), on the first answer: the rules' jieba dictionary loads
    then, and only when EXPERTS is set."""

    def __init__(
        self,
        settings: Settings,
        served: ServedModels,
        metrics: Metrics,
        default_model: str,
        classifier: Classifier | None = None,
    ) -> None:
        self.experts = dict(settings.experts)
        self.served = served
        self.metrics = metrics
        self.default_model = default_model
        self.rules = Rules() if self.experts else None
        if classifier is None and self.experts and settings.expert_classifier_model:
            classifier = Classifier(settings)
        self.classifier = classifier

    @property
    def enabled(self) -> bool:
        return self.rules is not None

    def route(self, question: str, *, chosen: str | None, kb_hit: bool) -> Route:
        """The model for the question; `chosen`: the follower's /model choice, `kb_hit`: the knowledge
        base has a relevant passage for it."""
        if chosen is not None:
            return Route("", chosen, "user")
        task, reason = self._task(question, kb_hit)
        if task is None:
            return Route("", self.default_model, "unclear")
        model = self.experts[task]
        if self.served.serves(model) is False:  # None: the list cannot be had, the expert is trusted
            return Route(task, self.default_model, "fallback", wanted=model)
        return Route(task, model, reason)

    def _task(self, question: str, kb_hit: bool) -> tuple[str | None, Reason]:
        tasks = list(self.experts)
        if self.rules is not None and (task := self.rules.task(question, kb_hit=kb_hit, tasks=tasks)):
            return task, "rule"
        if self.classifier is not None and (task := self.classifier.task(question, tasks)):
            return task, "classifier"
        return None, "unclear"

    def record(self, answer_id: str, route: Route) -> None:
        """The answer's log line and its count in answers_by_expert."""
        expert = route.task or "none"
        if route.reason == "fallback":
            log.warning(
                "answer %s: expert %s, model %s (fallback: %s is not served)",
                answer_id,
                expert,
                route.model,
                route.wanted,
            )
        else:
            log.info("answer %s: expert %s, model %s (%s)", answer_id, expert, route.model, route.reason)
        self.metrics.inc("answers_by_expert", expert=expert, model=route.model, reason=route.reason)

    def close(self) -> None:
        if self.classifier is not None:
            self.classifier.close()
