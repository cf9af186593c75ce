"""The knowledge base's operator tools as real processes (`make kb-add`, `kb-list`, `kb-remove`,
`kb-sync`, `kb-search` run `python -m bot.ops.kb`), and a running gunicorn web tier and Dramatiq worker
process that see each change at their next question, without a restart."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from bot import texts
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.knowledge import Spec, published_item, write
from testing.simulator import WeChatSimulator
from tests.conftest import APPID, ATTEMPT_TIMEOUT, ROOT, TOKEN, worker_env

REPORT = Spec(
    "行业轮动月报",
    [("核心观点", ["十二月行业轮动模型推荐超配银行、煤炭和电力设备三个行业。"])],
)
NOTES = Spec("可转债双低策略", [("", ["双低值等于转债价格加上转股溢价率乘以100，选出最低的20只等权持有。"])])
PAGE = Spec(
    "分词工具横评",
    [("速度", ["jieba 的速度最快，每秒可处理约 400 KB 文本。"])],
    url="https://mp.weixin.qq.com/s/seg",
)


def kb_tool(config: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.ops.kb", *args],
        cwd=ROOT,
        env=worker_env(config),
        capture_output=True,
        text=True,
        timeout=120,
    )


def ids_by_title(listing: str) -> dict[str, str]:
    return {match[1]: match[0] for match in re.findall(r"^([0-9a-f]{10})\s+(\S+)", listing, re.MULTILINE)}


def test_files_of_every_kind_are_added_listed_replaced_and_removed(
    base_config: dict[str, Any], tmp_path: Path
) -> None:
    files = [
        write(REPORT, tmp_path / "rotation.pdf"),
        write(NOTES, tmp_path / "convertible.md"),
        write(PAGE, tmp_path / "segmenters.html"),
        write(REPORT, tmp_path / "rotation-copy.docx"),
        write(NOTES, tmp_path / "notes-gbk.txt", encoding="gbk"),
    ]
    added = kb_tool(base_config, "add", *map(str, files))
    assert added.returncode == 0, added.stderr
    assert added.stdout.count("added") == 5 and "rotation.pdf" in added.stdout
    listing = kb_tool(base_config, "list").stdout
    assert "5 documents, 5 passages" in listing
    assert "file convertible.md" in listing and "file segmenters.html" in listing
    again = kb_tool(base_config, "add", str(files[0]), str(tmp_path / "missing.pdf"))
    assert again.returncode == 1 and "replaced" in again.stdout and "missing.pdf" in again.stderr
    assert "5 documents" in kb_tool(base_config, "list").stdout
    doc_id = ids_by_title(listing)["可转债双低策略"]
    removed = kb_tool(base_config, "remove", doc_id)
    assert removed.returncode == 0 and doc_id in removed.stdout
    assert kb_tool(base_config, "remove", doc_id).returncode == 1
    assert doc_id not in kb_tool(base_config, "list").stdout
    search = kb_tool(base_config, "search", "jieba 每秒能处理多少文本")
    assert search.returncode == 0 and "USED" in search.stdout and "分词工具横评" in search.stdout


def test_kb_sync_reports_what_it_did_or_what_the_account_lacks(
    base_config: dict[str, Any], fake_wechat: FakeWeChatAPI
) -> None:
    fake_wechat.published = [published_item("ART1", 1_700_000_000, REPORT), published_item("ART2", 1, NOTES)]
    synced = kb_tool(base_config, "sync")
    report = texts.KB_SYNC_REPORT.format(
        source=texts.KB_SOURCE_FREEPUBLISH, added=2, updated=0, removed=0, failed=0, unchanged=0
    )
    assert synced.returncode == 0 and report in synced.stdout
    fake_wechat.fail("freepublish", 48001)
    fake_wechat.fail("material", 48001)
    refused = kb_tool(base_config, "sync")
    assert refused.returncode == 1 and texts.KB_SYNC_UNAUTHORIZED in refused.stdout


def test_the_make_targets_run_the_tool() -> None:
    dry = subprocess.run(
        [
            "make",
            "-n",
            "-W",
            "requirements.txt",
            "kb-add",
            'FILES=a.pdf "b c.md"',
            "kb-list",
            "kb-remove",
            "ID=x",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    commands = [line for line in dry.stdout.splitlines() if "bot.ops.kb" in line]
    assert commands[-3:] == [
        '.venv/bin/python -m bot.ops.kb add a.pdf "b c.md"',
        ".venv/bin/python -m bot.ops.kb list",
        '.venv/bin/python -m bot.ops.kb remove "x"',
    ]
    usage = subprocess.run(["make", "-n", "kb-remove"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert "usage: make kb-remove ID=" in usage.stdout


@pytest.mark.slow
def test_running_processes_see_a_document_added_and_removed_without_a_restart(
    base_config: dict[str, Any],
    start_web_process: Callable[..., str],
    start_worker_process: Callable[..., Any],
    fake_openai: FakeOpenAI,
    tmp_path: Path,
) -> None:
    url = start_web_process()
    start_worker_process()
    fake_openai.set_behavior(reply="银行、煤炭和电力设备。")

    def ask(text: str) -> str | None:
        """The answer, fetched with 继续 if it was not ready within WeChat's attempts (a worker's first
        question after a change builds its index: jieba's dictionary, BM25)."""
        simulator = WeChatSimulator(url, TOKEN, APPID, attempt_timeout=ATTEMPT_TIMEOUT)
        reply = simulator.send_text("user-1", text).text
        deadline = time.monotonic() + 30
        while reply in (texts.STILL_WORKING, texts.NOTHING_MORE) and time.monotonic() < deadline:
            time.sleep(0.5)
            reply = simulator.send_text("user-1", "继续").text
        late = texts.LATE_ANSWER_PREFIX.format(question=text)  # fetched with 继续: headed as late
        return reply.removeprefix(late) if reply is not None else None

    wait_ready(url)

    question = "行业轮动模型推荐超配哪些行业？"
    assert ask(question) == "银行、煤炭和电力设备。"  # the worker's index is empty: built, nothing found
    added = kb_tool(base_config, "add", str(write(REPORT, tmp_path / "rotation.md")))
    assert added.returncode == 0, added.stderr
    assert ask(question) == "银行、煤炭和电力设备。\n\n来源：\n1. 行业轮动月报"
    doc_id = ids_by_title(kb_tool(base_config, "list").stdout)["行业轮动月报"]
    assert kb_tool(base_config, "remove", doc_id).returncode == 0
    assert ask(question) == "银行、煤炭和电力设备。"


def wait_ready(url: str) -> None:
    """Until a job worker's heartbeat reaches the web tier's /readyz."""
    deadline = time.monotonic() + 60
    while requests.get(url.removesuffix("/wechat") + "/readyz", timeout=2).status_code != 200:
        assert time.monotonic() < deadline, "no job worker became ready"
        time.sleep(0.2)
