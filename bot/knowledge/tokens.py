"""Words for BM25: jieba's search-engine mode (a long word and the words inside it: 科学院 gives 科学,
学院 and 科学院, so a question that says 科学 finds it too), after `normalize` — NFKC (full-width letters
and digits become ASCII), traditional characters made simplified (OpenCC's t2s: 員工的帶薪年假 is
员工的带薪年假, which jieba cuts right and the documents mostly write) and lower-casing — and after
`_separated`: letters and digits written together are cut apart (iphone15pro is iphone 15 pro, as
"iPhone 15 Pro" is; gpt4o is gpt 4 o, as gpt-4o is) and a hyphenated Latin word is also one word
(wi-fi is wi, fi and wifi, so WiFi6 finds Wi-Fi 6). Punctuation and the stop words of stopwords.txt
are dropped.

And what a question is about, for the relevance threshold: its words in jieba's precise mode (each
once, no sub-words), each weighted by how rare it is in Chinese at large — the IDF table jieba ships
for its keyword extraction (jieba/analyse/idf.txt) — so that 比较 or 合适 weigh less than 段落, in a
knowledge base of one document as in one of thousands.

jieba loads its dictionary on the first call (about 0.6 s, from its cache file afterwards), OpenCC
its own (30 ms), so a process whose knowledge base is empty never pays for it. The conversion costs
about 2 µs a question and 0.2 ms per 3,500 characters of a document (measured).

The passages' words are stored with the documents (bot/store/knowledge.py), made by the tokenizer of
their day: TOKENIZER numbers this one, and a document indexed by another one is tokenized again from
its stored text when a process loads it (bot/knowledge/index.py), so that its words and a question's
are always made the same way. Bump it whenever a change here changes the words a text gives.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import unicodedata
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from bot.lazy import LazyModule

if TYPE_CHECKING:
    import jieba
    import opencc
else:  # imported on first use (bot/lazy.py); it imports pkg_resources when present, which may warn
    jieba = LazyModule("jieba", setup=lambda module: module.setLogLevel(logging.WARNING), quiet=True)
    opencc = LazyModule("opencc")

#: the version of the words `tokenize` gives a text (1: before traditional characters and letters run
#: into digits were handled); stored with each document (DocumentRecord.tokenizer)
TOKENIZER = 2


def _package_dir(name: str) -> Path:
    """Where an installed package lies, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ImportError(f"{name} is not installed")
    return Path(spec.origin).parent


STOPWORDS_FILE = Path(__file__).with_name("stopwords.txt")
#: jieba's IDF table of general Chinese (270,000 words), found without importing jieba
GENERAL_IDF_FILE = _package_dir("jieba") / "analyse" / "idf.txt"
#: a word at least this rare in general Chinese (a word not in the table too: a term of the trade, a
#: number, a Latin word) weighs this much: only the ~20,000 commoner words are kept in memory
RARE_WEIGHT = 9.0
#: a token is a word when it has a letter, a digit or a CJK character
_WORDLIKE = re.compile(r"[0-9a-z\u3400-\u9fff\uf900-\ufaff]")
#: where a letter meets a digit (after lower-casing): iphone|15|pro, gpt-4|o
_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")
#: a Latin word written with hyphens (wi-fi, e-mail, state-of-the-art), not part of a longer run
_HYPHENATED = re.compile(r"(?<![a-z0-9-])[a-z]+(?:-[a-z]+)+(?![a-z0-9-])")


@cache
def stopwords() -> frozenset[str]:
    lines = STOPWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def normalize(text: str) -> str:
    """NFKC, simplified characters, lower case: the same text however it was typed."""
    return _simplified(unicodedata.normalize("NFKC", text)).lower()


@cache
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def _simplified(text: str) -> str:
    return _converter().convert(text) if text else text


def _separated(text: str, *, parts: bool) -> str:
    """Normalized `text` with letters and digits cut apart where they meet, and each hyphenated Latin
    word joined into one word (wifi), its `parts` kept before it too (wi fi wifi: search mode's long
    word and the words inside it). jieba keeps a run of letters and digits as one word and cuts at a
    hyphen, so neither would match the other way of writing it; no segmenter does this for us."""
    text = _LETTER_DIGIT.sub(" ", normalize(text))
    if parts:
        return _HYPHENATED.sub(lambda m: f"{m[0].replace('-', ' ')} {m[0].replace('-', '')}", text)
    return _HYPHENATED.sub(lambda m: m[0].replace("-", ""), text)


def _kept(found: list[str]) -> list[str]:
    skip = stopwords()
    return [
        word for word in (w.strip() for w in found) if word and word not in skip and _WORDLIKE.search(word)
    ]


def tokenize(text: str) -> list[str]:
    """The words of `text` that can tell passages apart, in order (repeats kept: BM25 counts them)."""
    return _kept(jieba.lcut_for_search(_separated(text, parts=True)))


def words(text: str) -> list[str]:
    """What `text` is about: its words in jieba's precise mode, each once, without stop words."""
    return list(dict.fromkeys(_kept(jieba.lcut(_separated(text, parts=False)))))


def weight(word: str) -> float:
    """How much a word says about what a question is about: its IDF in general Chinese, at most
    RARE_WEIGHT."""
    return _general_idf().get(word, RARE_WEIGHT)


@cache
def _general_idf() -> dict[str, float]:
    table: dict[str, float] = {}
    with GENERAL_IDF_FILE.open(encoding="utf-8") as handle:
        for line in handle:
            word, _, value = line.rstrip("\n").rpartition(" ")
            if word and float(value) < RARE_WEIGHT:
                table[word] = float(value)
    return table


def warm() -> None:
    """Load jieba's dictionary now (a worker may do it before its first question)."""
    jieba.initialize()
