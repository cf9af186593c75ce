"""The router's rules: which task a question is, told from its words alone — no model, no I/O.

Tried in this order, the first that holds wins, among the tasks EXPERTS names:

* 分析 (analysis): a long text (ANALYSIS_MIN_CHARS or more) with an analysis verb (分析, 总结, 摘要…).
  First, because a pasted report is full of numbers and would otherwise look like a sum to work out.
* 计算 (computing): a number (digits, an expression, or Chinese numerals such as 三百万, 百分之五) and
  a computing word (计算, 算一下, 多少, 几年, 等于…); or an arithmetic expression alone (3*4, 2^10,
  1.5-0.3), but not a bare - or / between whole numbers, a date, phone number or range as often
  (2024-06-01, 400-820-8820, 3-5岁), which needs the computing word.
* 检索 (retrieval): the knowledge base has a passage relevant to the question — the same retrieval,
  with its KB_MIN_RELEVANCE threshold, that grounds the answer (bot/knowledge/), so it costs nothing
  more; with an empty knowledge base it never holds.
* 咨询 (consulting): a request for advice or a choice (建议, 怎么办, 如何选择, 值不值得…).

The words are in words.toml. Whole words are matched on jieba's segmentation (the segmenter the
knowledge base uses), so 计算 does not match 计算机, 分析 not 分析师, 几 not 几乎: what a regex over
characters would get wrong. A question costs one jieba pass and a few set lookups: about 60 µs on an
idle core (README, "Task experts"). jieba's dictionary loads once per process, when the rules are
built (about 0.65 s from its cache).
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import EXPERT_TASKS
from bot.knowledge.tokens import normalize
from bot.lazy import LazyModule

if TYPE_CHECKING:
    import jieba
else:  # imported on first use (bot/lazy.py): every process imports this module, few route
    jieba = LazyModule("jieba", setup=lambda module: module.setLogLevel(logging.WARNING), quiet=True)

WORDS_FILE = Path(__file__).with_name("words.toml")
#: a question this long (characters) carries a text of its own to analyse
ANALYSIS_MIN_CHARS = 100
#: the tasks, by what they mean (their names are EXPERT_TASKS')
CONSULTING, COMPUTING, RETRIEVAL, ANALYSIS = EXPERT_TASKS
#: the order the rules are tried in (see the module's docstring)
ORDER = (ANALYSIS, COMPUTING, RETRIEVAL, CONSULTING)
#: the section of WORDS_FILE that says which words are numbers
NUMBERS_SECTION = "numbers"
#: digits, after NFKC (full-width ３ is 3)
_DIGIT = re.compile(r"\d")
#: an arithmetic expression on its own: 3*4, 1 + 2, 2^10, 100÷4; a - or / only where it is clearly
#: arithmetic (1.5-0.3, (1+5%)/2, 10-(2+3), 100-4=): between plain integers it is as often a date
#: (2024-06-01, 6/1), a phone number (400-820-8820) or a range (3-5岁), which count with a computing word
_EXPRESSION = re.compile(
    r"\d\s*[+*×÷^]\s*[\d(（]"  # + * × ÷ ^ between numbers
    r"|(?:\d\.\d+|[)）%])\s*[-/]\s*[\d(（]"  # - or / after a decimal, a bracket or a percentage
    r"|\d\s*[-/]\s*(?:[(（]|\d+\.\d|\d+\s*%)"  # … or before one
    r"|\d\s*[-/]\s*\d+\s*[=＝]"  # … or followed by =
)


@dataclass(frozen=True)
class Vocabulary:
    """One task's words: those jieba keeps whole, and those it cuts into several (如何选择 → 如何 选择),
    which match where the question has the same words in a row (打算下个月 has no 算 下 in it)."""

    words: frozenset[str]
    #: first word → the phrases (word sequences) that start with it
    phrases: dict[str, tuple[tuple[str, ...], ...]]

    @classmethod
    def of(cls, entries: Iterable[str]) -> Vocabulary:
        words: set[str] = set()
        phrases: dict[str, list[tuple[str, ...]]] = {}
        for entry in (normalize(e.strip()) for e in entries if e.strip()):
            cut = tuple(jieba.lcut(entry))
            if len(cut) == 1:
                words.add(entry)
            else:
                phrases.setdefault(cut[0], []).append(cut)
        return cls(frozenset(words), {first: tuple(found) for first, found in phrases.items()})

    def found_in(self, words: Sequence[str]) -> bool:
        return any(
            word in self.words
            or any(tuple(words[at : at + len(phrase)]) == phrase for phrase in self.phrases.get(word, ()))
            for at, word in enumerate(words)
        )


@dataclass(frozen=True)
class Numerals:
    """Which words of Chinese numerals are numbers: made only of `characters`, with one of `marks`,
    and not one of `not_numbers` (万一, 十分)."""

    characters: frozenset[str]
    marks: frozenset[str]
    not_numbers: frozenset[str]

    def number(self, word: str) -> bool:
        return (
            bool(word)
            and self.characters.issuperset(word)
            and not self.marks.isdisjoint(word)
            and word not in self.not_numbers
        )


class Rules:
    """The rules, their words read once (WORDS_FILE, or another file for tests)."""

    def __init__(self, path: Path = WORDS_FILE) -> None:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        self.vocabularies = {task: Vocabulary.of(data.get(task, {}).get("words", [])) for task in ORDER}
        numbers = data.get(NUMBERS_SECTION, {})
        self.numerals = Numerals(
            frozenset(numbers.get("characters", "")),
            frozenset(numbers.get("marks", "")),
            frozenset(numbers.get("not_numbers", [])),
        )

    def task(self, question: str, *, kb_hit: bool, tasks: Collection[str]) -> str | None:
        """The first rule of ORDER that holds for the question among `tasks`, or None (unclear)."""
        text = normalize(question)
        words = [word for word in (w.strip() for w in jieba.lcut(text)) if word]
        for task in ORDER:
            if task in tasks and self._holds(task, text, words, kb_hit):
                return task
        return None

    def _holds(self, task: str, text: str, words: list[str], kb_hit: bool) -> bool:
        if task == RETRIEVAL:
            return kb_hit
        found = self.vocabularies[task].found_in(words)
        if task == ANALYSIS:
            return found and len(text) >= ANALYSIS_MIN_CHARS
        if task == COMPUTING:
            return bool(_EXPRESSION.search(text)) or (found and self.has_number(text, words))
        return found

    def has_number(self, text: str, words: list[str]) -> bool:
        """Digits, or a word of Chinese numerals that is a number (三百万, not 万一)."""
        return bool(_DIGIT.search(text)) or any(self.numerals.number(word) for word in words)
