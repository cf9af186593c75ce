"""The knowledge base's text handling: passages cut at paragraph and sentence ends, and jieba's words."""

from __future__ import annotations

import pytest

from bot.knowledge.chunking import CHUNK_CHARS, SENTENCE_MAX, chunk
from bot.knowledge.documents import Block
from bot.knowledge.tokens import tokenize, words

SENTENCE = "低波动因子在中证800内的IC均值为0.045，多空组合年化收益9.8%。"


def test_short_paragraphs_are_packed_into_passages_of_a_few_hundred_characters() -> None:
    blocks = [Block(f"第{n}段。" + SENTENCE) for n in range(30)]
    chunks = chunk(blocks)
    assert len(chunks) > 3
    assert all(len(c.text) <= CHUNK_CHARS for c in chunks)
    assert all(len(c.text) > CHUNK_CHARS // 2 for c in chunks[:-1])
    # cut between paragraphs, never inside one
    assert all(line.startswith("第") for c in chunks for line in c.text.split("\n"))


def test_a_long_paragraph_is_cut_at_sentence_ends_and_nothing_is_lost() -> None:
    paragraph = "".join(f"第{n}句：{SENTENCE}" for n in range(40))
    chunks = chunk([Block(paragraph)])
    assert "".join(c.text for c in chunks) == paragraph
    assert all(c.text.endswith("。") for c in chunks)
    assert all(len(c.text) <= CHUNK_CHARS for c in chunks)


def test_a_sentence_longer_than_a_passage_is_cut_at_commas() -> None:
    sentence = "，".join(["收益率曲线在本季度明显走平"] * 60) + "。"
    chunks = chunk([Block(sentence)])
    assert "".join(c.text for c in chunks) == sentence
    assert all(len(c.text) <= max(CHUNK_CHARS, SENTENCE_MAX) for c in chunks)
    assert all(c.text.endswith(("，", "。")) for c in chunks)


def test_passages_keep_their_heading_and_a_heading_starts_a_passage() -> None:
    blocks = [
        Block("核心观点", heading=True),
        Block(SENTENCE),
        Block("风险提示", heading=True),
        Block("模型可能失效。"),
    ]
    chunks = chunk(blocks)
    assert [(c.section, c.text) for c in chunks] == [("核心观点", SENTENCE), ("风险提示", "模型可能失效。")]


def test_english_text_is_cut_at_full_stops() -> None:
    paragraph = " ".join(["The rotation model picks banks, coal and utilities for December."] * 12)
    chunks = chunk([Block(paragraph)])
    assert len(chunks) > 1 and "".join(c.text for c in chunks) == paragraph


def test_tokens_are_jieba_words_with_subwords_without_stopwords_or_punctuation() -> None:
    words = tokenize("计算技术研究所的行业轮动模型在２０２３年的表现如何？")
    assert {"研究所", "研究", "行业", "轮动", "模型", "2023", "表现"} <= set(words)
    assert not {"的", "在", "如何", "？", "?"} & set(words)


def test_english_words_are_lower_cased_and_a_hyphenated_word_is_also_one_word() -> None:
    assert tokenize("What is BERT fine-tuning?") == ["bert", "fine", "tuning", "finetuning"]
    assert words("What is BERT fine-tuning?") == ["bert", "finetuning"]


def test_traditional_characters_give_the_words_of_simplified_ones() -> None:
    assert tokenize("員工的帶薪年假有幾天？") == tokenize("员工的带薪年假有几天？")
    assert words("員工的帶薪年假有幾天？") == words("员工的带薪年假有几天？")
    assert {"员工", "带薪", "几天"} <= set(tokenize("員工的帶薪年假有幾天？"))


@pytest.mark.parametrize(
    ("together", "apart"),
    [("iPhone15Pro续航多久", "iPhone 15 Pro 的续航"), ("WiFi6", "Wi-Fi 6"), ("GPT4o", "GPT-4o")],
)
def test_letters_and_digits_written_together_give_the_words_written_apart(together: str, apart: str) -> None:
    assert set(words(together)) - {"续航", "多久"} <= set(tokenize(apart))
    assert set(words(apart)) - {"续航"} <= set(tokenize(together))


def test_letters_and_digits_are_cut_apart_where_they_meet() -> None:
    assert tokenize("iPhone15Pro") == ["iphone", "15", "pro"]
    assert tokenize("GPT-4o") == tokenize("gpt4o") == ["gpt", "4", "o"]
    assert tokenize("2023年收益12.5%") == ["2023", "年", "收益", "12.5%"]


def test_a_question_of_stopwords_has_no_words() -> None:
    assert tokenize("你好，请问一下？") == []
