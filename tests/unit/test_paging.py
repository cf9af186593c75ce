"""Pages are byte-safe, lossless, and stable while the answer is still being streamed."""

from __future__ import annotations

import random

import pytest

from bot.answering.paging import (
    PageSplitter,
    Resume,
    decoration_reserve,
    page_end,
    split_pages,
)
from bot.replies import truncate_utf8, utf8_len


def test_truncate_never_splits_a_character() -> None:
    text = "你好世界" * 10  # 3 bytes each
    for limit in range(0, 40):
        cut = truncate_utf8(text, limit)
        assert utf8_len(cut) <= limit
        assert text.startswith(cut)
        assert utf8_len(cut) > limit - 3


def test_short_text_is_one_page() -> None:
    assert split_pages("hello", 100) == ["hello"]
    assert split_pages("", 100) == [""]


@pytest.mark.parametrize("seed", range(20))
def test_pages_fit_and_lose_nothing(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = ["a", "b", " ", "\n", "你", "好", "。", "😀", "，", "!"]
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3000)))
    budget = rng.randint(16, 400)
    pages = split_pages(text, budget)
    joined = "".join(pages)
    assert text.startswith(joined)
    assert text[len(joined) :].strip() == ""  # at most trailing white space is dropped
    assert all(utf8_len(page) <= budget for page in pages)


@pytest.mark.parametrize("seed", range(20))
def test_streamed_pages_equal_pages_of_the_whole(seed: int) -> None:
    rng = random.Random(seed)
    pieces = ["字", "x", " ", "。", "\n", "🙂", "，", "https://a.example/s?q=1&x=y;z!"]
    text = "".join(rng.choice(pieces) for _ in range(2500))
    splitter = PageSplitter(300)
    streamed: list[str] = []
    position = 0
    while position < len(text):
        step = rng.randint(1, 40)
        streamed += splitter.feed(text[position : position + step])
        position += step
    streamed += splitter.finish()
    assert streamed == split_pages(text, 300)
    assert "".join(streamed) == text


def test_cut_prefers_a_line_break_in_the_second_half() -> None:
    text = "a" * 60 + "\n" + "b" * 100
    assert page_end(text, 80) == 61


def test_a_page_is_not_cut_inside_a_web_address() -> None:
    """Its `?` is later than every comma, yet the page ends after a comma and the address stays whole."""
    url = "https://www.baidu.com/s?wd=python&ie=utf-8"
    text = (
        "关于这个问题，" * 60 + "可以参考官方搜索 " + url + " 获得更多结果，" + "然后继续阅读相关资料，" * 40
    )
    pages = split_pages(text, 1600)
    assert "".join(pages) == text and any(url in page for page in pages)
    assert pages[0].endswith("，")


def test_without_a_break_a_page_ends_before_the_address_it_would_cut() -> None:
    url = "https://example.com/" + "a" * 40
    assert page_end("字" * 30 + url + "b" * 40, 120) == 30
    assert page_end("字" * 5 + url + url, 60) == 50  # an address from the first half on: the byte limit


def test_cut_falls_back_to_the_byte_limit() -> None:
    text = "字" * 100
    assert page_end(text, 30) == 10


def test_reserve_leaves_room_for_content() -> None:
    assert 100 < decoration_reserve() < 600


def test_resume_drops_what_the_user_has_when_the_new_run_repeats_it() -> None:
    resume = Resume(seen="Hello wor", note="[again]")
    out = [resume.feed(piece) for piece in ["Hel", "lo w", "orld", "!"]] + [resume.finish()]
    assert "".join(out) == "ld!"


def test_resume_starts_with_a_note_when_the_new_run_differs() -> None:
    resume = Resume(seen="Hello world", note="[again]")
    out = [resume.feed(piece) for piece in ["Hel", "p is here"]] + [resume.finish()]
    assert "".join(out) == "[again]Help is here"


def test_resume_with_a_shorter_new_answer_says_so() -> None:
    resume = Resume(seen="Hello world", note="[again]")
    assert resume.feed("Hello") == ""
    assert resume.finish() == "[again]Hello"


def test_a_run_that_fails_while_repeating_what_the_user_has_adds_nothing() -> None:
    resume = Resume(seen="Hello world", note="[again]")
    assert resume.feed("Hello") == "" and resume.abandon() == ""
    assert resume.feed(" there") == " there"  # nothing is held back any more


def test_a_run_that_fails_after_it_differed_keeps_its_new_text() -> None:
    resume = Resume(seen="Hello world", note="[again]")
    assert resume.feed("Help") == "[again]Help" and resume.abandon() == ""
    assert Resume().abandon() == ""


def test_resume_without_seen_text_passes_everything() -> None:
    resume = Resume()
    assert resume.feed("abc") == "abc" and resume.finish() == ""


def test_a_masked_word_is_never_split_across_pages() -> None:
    word = "敏感词汇"
    text = "字" * 98 + word + "尾" * 200  # the word straddles the 300-byte cut
    for step in (1, 3, 7):
        splitter = PageSplitter(300, transform=lambda t: t.replace(word, "****"))
        splitter.holdback = len(word) - 1
        pages = []
        for index in range(0, len(text), step):
            pages += splitter.feed(text[index : index + step])
        pages += splitter.finish()
        assert "".join(pages) == text.replace(word, "****")
        assert all(word[:2] not in page for page in pages)


@pytest.mark.parametrize("symbol", ["👨\u200d👩\u200d👧", "1\ufe0f\u20e3", "👍🏽", "🇨🇳"])
def test_without_a_break_a_page_does_not_split_a_symbol(symbol: str) -> None:
    text = symbol * 400
    pages = split_pages(text, 100)
    assert "".join(pages) == text
    assert all(page == symbol * (len(page) // len(symbol)) for page in pages)


def test_the_text_held_back_for_a_masked_word_never_makes_the_last_page_too_long() -> None:
    """Held back (`holdback`), the end of the text can be over a page when the answer ends: it is cut."""
    splitter = PageSplitter(40)
    splitter.holdback = 5
    assert splitter.feed("字" * 16) == []  # 33 bytes before the 5 held back: no page yet
    pages = splitter.finish()
    assert "".join(pages) == "字" * 16 and all(utf8_len(page) <= 40 for page in pages)
    longer = PageSplitter(40)
    longer.holdback = 20  # more than the text: nothing is cut before the end
    assert longer.feed("字" * 19) == [] and "".join(longer.finish()) == "字" * 19
