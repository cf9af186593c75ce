"""Markdown in chat replies (bot/format/chat.py): the model's Markdown as text that reads well in
WeChat, converted block by block while it streams, pages cut from it byte-safe and never changed."""

from __future__ import annotations

import random

import pytest

from bot import texts
from bot.answering.paging import PageSplitter, split_pages
from bot.format.chat import HOLD_CHARS, OUT_LINE, ChatStream, is_rich, to_chat
from bot.format.latex import to_text
from bot.replies import utf8_len


def streamed(markdown: str, sizes: list[int]) -> str:
    stream, out, index = ChatStream(), list[str](), 0
    while index < len(markdown):
        size = sizes[len(out) % len(sizes)]
        out.append(stream.feed(markdown[index : index + size]))
        index += size
    return "".join(out) + stream.finish()


def test_headings_lose_their_marks() -> None:
    assert to_chat("# 一级标题\n\n正文") == "【一级标题】\n\n正文"
    assert to_chat("## Two\n### Three\n#### 四级") == "【Two】\n\n【Three】\n\n四级"
    assert to_chat("Setext 标题\n===\n\n正文") == "【Setext 标题】\n\n正文"


def test_bold_italics_strikethrough_and_inline_code_lose_their_marks() -> None:
    source = "这是**重要**的、*强调*的、__粗体__、_斜体_、~~删掉~~的，还有 `pip install x`。"
    assert to_chat(source) == "这是重要的、强调的、粗体、斜体、删掉的，还有 pip install x。"
    assert to_chat(r"转义的 \*星号\* 保留") == "转义的 *星号* 保留"
    assert to_chat("2 * 3 * 4 = 24") == "2 * 3 * 4 = 24"


def test_nested_lists_keep_their_bullets_numbers_and_indentation() -> None:
    source = "1. 准备\n   - 下载\n   - 安装\n     - 勾选 **PATH**\n2. 运行\n\n   第二段说明\n3. 完成\n"
    assert to_chat(source) == (
        "1. 准备\n   ◦ 下载\n   ◦ 安装\n     ▪ 勾选 PATH\n2. 运行\n   第二段说明\n3. 完成"
    )
    assert to_chat("5. 五\n6. 六") == "5. 五\n6. 六"
    assert to_chat("1. 一\n1. 二\n1. 三") == "1. 一\n2. 二\n3. 三"
    assert to_chat("- a\n- b\n\n后面的段落") == "• a\n• b\n\n后面的段落"


def test_tables_become_key_value_lines_or_one_block_per_row() -> None:
    two = "| 命令 | 作用 |\n|---|---|\n| `git add` | 暂存 |\n| git commit | **提交** |"
    assert to_chat(two) == "git add：暂存\ngit commit：提交"
    many = "| 语言 | 类型 | 年份 |\n|---|:-:|--:|\n| Python | 解释型 | 1991 |\n| C | 编译型 | |"
    assert to_chat(many) == "• Python\n  类型：解释型\n  年份：1991\n• C\n  类型：编译型"
    english = "| Name | Role |\n|---|---|\n| Ada | engineer |"
    assert to_chat(english) == "Ada: engineer"


def test_code_blocks_keep_every_line_and_space() -> None:
    source = "示例：\n\n```python\ndef f(x):\n    return x * 2\n\n\nprint(f(21))\n```\n\n结束"
    open_line = texts.CHAT_CODE_OPEN.format(lang="python")
    code = "def f(x):\n    return x * 2\n\n\nprint(f(21))"
    expected = f"示例：\n\n{open_line}\n{code}\n{texts.CHAT_CODE_CLOSE}\n\n结束"
    assert to_chat(source) == expected
    assert to_chat("```\n**不是粗体**\n```").split("\n") == [
        texts.CHAT_CODE_OPEN.format(lang=texts.CHAT_CODE_DEFAULT),
        "**不是粗体**",
        texts.CHAT_CODE_CLOSE,
    ]
    assert to_chat("    indented code\n    second") == "indented code\nsecond"


def test_links_become_their_text_then_their_address() -> None:
    assert (
        to_chat("详见[官方文档](https://docs.python.org/3/)。") == "详见官方文档 https://docs.python.org/3/。"
    )
    assert to_chat("see [docs](https://a.example/x)for more") == "see docs https://a.example/x for more"
    assert to_chat("<https://a.example/>") == "https://a.example/"
    assert to_chat("[https://a.example/](https://a.example/)") == "https://a.example/"
    assert to_chat("裸链接 https://a.example/a_b_c 保持原样") == "裸链接 https://a.example/a_b_c 保持原样"
    image = texts.CHAT_IMAGE.format(alt="示意图", url="https://a.example/p.png")
    assert to_chat("![示意图](https://a.example/p.png)") == image


def test_mixed_chinese_keeps_its_line_breaks_and_quotes_and_rules() -> None:
    source = "第一行\n第二行\n\n> 引用一\n> 引用二\n\n---\n\n1、中文编号不是列表\n2、照原样"
    quote = texts.CHAT_QUOTE
    assert to_chat(source) == (
        f"第一行\n第二行\n\n{quote}引用一\n{quote}引用二\n\n{texts.CHAT_RULE}\n\n1、中文编号不是列表\n2、照原样"
    )


def test_formulas_read_as_plain_text() -> None:
    assert to_chat("质能方程 $E=mc^2$，勾股 \\(a^2+b^2=c^2\\)。") == "质能方程 E=mc²，勾股 a²+b²=c²。"
    assert to_chat("$$\n\\frac{a+b}{2} \\le \\sqrt{ab}\n$$") == "(a+b)/2 ≤ √(ab)"
    assert to_chat("\\[\n\\sum_{i=1}^{n} i\n\\]") == "∑_(i=1)ⁿ i"
    assert to_chat("价格是 $5 和 $10。") == "价格是 $5 和 $10。"  # money, not math
    assert to_text(r"\alpha \times \beta \ne \infty") == "α × β ≠ ∞"
    assert to_text(r"\unknown{x}") == r"\unknown{x}"


def test_raw_html_stays_text() -> None:
    assert to_chat("<b>不是粗体</b> <script>x</script>") == "<b>不是粗体</b> <script>x</script>"


def test_rich_answers_are_told_apart() -> None:
    assert is_rich("```\nx\n```") and is_rich("| a | b |\n|--|--|\n| 1 | 2 |") and is_rich("$x^2$")
    assert not is_rich("**粗体**和列表\n\n- a\n- b")


SAMPLE = """# 安装 Python

这是**重要**的说明，见[文档](https://docs.python.org)。

## 步骤

1. 下载安装包
2. 运行安装程序
   - 勾选 **Add to PATH**
   - 点击安装
3. 验证：

```python
import sys
print(sys.version)
```

| 命令 | 作用 |
|---|---|
| `python -V` | 查看版本 |
| `pip list` | 列出包 |

> 提示：遇到问题
> 可以重装。

公式 $E=mc^2$ 与
$$
\\frac{1}{2}
$$

---
""" + "".join(f"第{i}行：较长的中文段落内容，用来让段落超过保留上限。\n" for i in range(40))


#: one long line with marks, a link and a formula, as some models write a whole answer
LONG_LINE = (
    "**先说结论**："
    + "这件事要分几步来看，" * 20
    + "参见[文档](https://a.example/x_(y))，"
    + "其中 `code_1` 和 $x^2$ 都要注意；" * 6
    + "*斜体跨越很长的一段"
    + "内容，" * 60
    + "到这里结束*。"
)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("sample", [SAMPLE, LONG_LINE], ids=["blocks", "one-long-line"])
def test_streaming_gives_exactly_the_whole_conversion_however_the_text_arrives(
    seed: int, sample: str
) -> None:
    chance = random.Random(seed)
    sizes = [chance.randint(1, 12) for _ in range(50)]
    assert streamed(sample, sizes) == to_chat(sample)


#: a paragraph long enough that its lines go out before it ends
LONG_PARAGRAPH = "根据题意，我们需要先求出两个变量之间的关系，然后代入已知条件进行计算，最后得到结果。" * 3


@pytest.mark.parametrize("size", [1, 3, 7, 40])
@pytest.mark.parametrize(
    "after",
    [
        "\n$$\nx = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a}\n$$\n所以答案是 2。",  # a formula without a blank line
        "\n公式如下：\n\\[\nx^2 + y^2\n\\]\n后文",
        "\n见[一个很长的链接文字，\n跨了一行](https://a.example/p)。",
        "1) 项\n2. 步骤二\n   继续说明\n" + LONG_PARAGRAPH,  # lines that only continue the paragraph
        "如下图所示![系统架构图](https://example.com/images/arch.png)图中展示了整体结构。",
        "，注意 a) 先安装，搜索入口在[百度](https://www.baidu.com/s?wd=python&ie=utf-8)里面可以找到更多资料",
    ],
    ids=["display-math", "bracket-math", "link-across-lines", "continuation", "image", "link-after-paren"],
)
def test_what_follows_a_long_paragraph_reads_as_in_the_whole_conversion(after: str, size: int) -> None:
    source = LONG_PARAGRAPH + after
    assert streamed(source, [size]) == to_chat(source)


def test_an_underline_under_a_paragraph_partly_out_is_a_rule_and_loses_nothing() -> None:
    """Converted whole, the underline makes the paragraph a heading; streamed, its first lines are out
    already, and it stays a paragraph followed by a rule (the lines that went out are never changed)."""
    lines = ["很长的一行。" * 10] * 4
    text = streamed("\n".join(lines) + "\n小结\n---\n正文", [3])
    assert text == "\n".join([*lines, "小结"]) + "\n\n" + texts.CHAT_RULE + "\n\n正文"


@pytest.mark.parametrize("size", [1, 3, 7, 9, 10, 12, 50, 1000])
def test_an_underline_is_only_read_under_the_paragraph_it_ends(size: int) -> None:
    """At the answer's very end (no line break after it) the underline still reads as a rule, and the
    placeholder of the lines that are out never shows; a `---` in a code block after the paragraph stays
    a line of code."""
    lines = ["很长的一行。" * 10] * 4
    ending = streamed("\n".join(lines) + "\n小结\n---", [size])
    assert OUT_LINE not in ending and ending == "\n".join([*lines, "小结"]) + "\n\n" + texts.CHAT_RULE
    code = LONG_PARAGRAPH + "\n" + LONG_PARAGRAPH + "\n配置如下：\n```yaml\n---\nname: demo\n```\n"
    assert streamed(code, [size]) == to_chat(code) and "yaml ———\n---\nname: demo" in to_chat(code)


def test_streamed_text_comes_out_block_by_block_before_the_end() -> None:
    stream = ChatStream()
    assert stream.feed("# 标题\n\n第一段") == "【标题】"  # a heading is over with its line
    assert stream.feed("还在写\n") == ""  # the paragraph may go on
    assert stream.feed("\n第二") == "\n\n第一段还在写"  # a blank line ended it
    list_source = "".join(f"- 第{i}项\n" for i in range(10))
    partial = ChatStream().feed(list_source)
    assert partial.endswith("• 第8项") and "第9项" not in partial  # items but the last
    long_paragraph = "".join(f"第{i}行较长的内容\n" for i in range(HOLD_CHARS // 2))
    assert ChatStream().feed(long_paragraph).count("\n") >= HOLD_CHARS // 2 - 2  # line by line
    one_line = ChatStream()
    early = "".join(one_line.feed("很长的一行没有换行，" * 10) for _ in range(10))
    assert len(early) > 500 and "\n" not in early  # and a long line, sentence by sentence
    code = ChatStream().feed("```js\nlet a = 1;\nlet b = 2;\n")
    assert code == texts.CHAT_CODE_OPEN.format(lang="js") + "\nlet a = 1;\nlet b = 2;"


@pytest.mark.parametrize("budget", [120, 400, 1500])
def test_pages_cut_from_the_stream_are_the_pages_of_the_whole_and_never_split_a_character(
    budget: int,
) -> None:
    source = SAMPLE + "表情😀和中文混排。" * 50
    splitter, stream, pages = PageSplitter(budget), ChatStream(), []
    chance = random.Random(budget)
    index = 0
    while index < len(source):
        size = chance.randint(1, 9)
        pages += splitter.feed(stream.feed(source[index : index + size]))
        index += size
    pages += splitter.feed(stream.finish()) + splitter.finish()
    assert pages == split_pages(to_chat(source), budget)
    assert all(utf8_len(page) <= budget for page in pages)
    assert all(page.encode("utf-8").decode("utf-8") == page for page in pages)
    assert "".join(pages) == to_chat(source)


@pytest.mark.parametrize("size", [1, 2, 50])
def test_a_footnote_keeps_its_text(size: int) -> None:
    """CommonMark read `[^1]: …` as a link reference definition: the note vanished, its mark a link."""
    source = "爱因斯坦提出了相对论[^1]。\n\n[^1]: 参见《物理学史》第3章。\n"
    assert (
        streamed(source, [size])
        == to_chat(source)
        == "爱因斯坦提出了相对论[^1]。\n\n[^1]: 参见《物理学史》第3章。"
    )


@pytest.mark.parametrize("size", [1, 2, 50])
def test_a_reference_link_defined_after_its_use_keeps_its_address(size: int) -> None:
    """Models cite like this; a stream has sent `[1]` before its definition comes, which then vanished."""
    source = "据报道[1]，结果如下。\n\n[1]: https://news.example/a?id=1\n"
    assert streamed(source, [size]) == to_chat(source) == source.strip()


def test_a_half_open_interval_does_not_hold_the_lines_after_it() -> None:
    """`[0, 1)` opens no link: the lines of a long paragraph after it still go out as they are final."""
    lines = [
        f"第{i}行：取值范围是 [0, 1) 的区间，这一行足够长，可以在段落写完之前先发出去。" for i in range(8)
    ]
    stream = ChatStream()
    early = stream.feed("\n".join(lines) + "\n")
    assert lines[5] in early and stream.finish() == "\n" + lines[-1]
