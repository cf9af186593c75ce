"""The console's knowledge-base page (bot/console/library.py) through Flask's test client, with a real
Redis, a job worker and the loopback fakes: a file of each format uploaded through the form is found
by the search box and grounds a chat answer; hostile uploads are refused with a Chinese sentence and
store nothing; a document is removed; the article sync runs as a job and its report shows; no POST
passes without the CSRF token; document text is escaped."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage
from werkzeug.test import TestResponse, encode_multipart

from bot import texts
from bot.answering.jobs import QUEUE
from bot.console import library
from testing.console import login
from testing.fakes.embeddings import FakeEmbeddings
from testing.fakes.openai_server import FakeOpenAI
from testing.fakes.wechat_api import FakeWeChatAPI
from testing.knowledge import Spec, published_item, write
from testing.pages import PUBLIC_BASE
from testing.patience import wait_for
from tests.conftest import Bot

ADMIN = "admin-kb"
SPEC = Spec(
    "红利策略季报",
    [
        (
            "核心观点",
            ["第四季度红利策略建议超配公用事业、银行和高速公路三个板块，股息率中位数为百分之五点二。"],
        )
    ],
)
PASSAGE = SPEC.paragraphs[0]
QUESTION = "红利策略建议超配哪些板块？"
FORMATS = ["report.md", "report.txt", "report.html", "report.pdf", "report.docx"]


@pytest.fixture
def console_bot(make_bot: Callable[..., Bot]) -> Bot:
    return make_bot(public_base_url=PUBLIC_BASE, wechat_admin_openids=[ADMIN])


@pytest.fixture
def client(console_bot: Bot) -> FlaskClient:
    return console_bot.app.test_client()


@pytest.fixture
def csrf(client: FlaskClient, console_bot: Bot) -> str:
    return login(client, console_bot.app, ADMIN)


def upload(client: FlaskClient, csrf: str | None, name: str, data: bytes) -> TestResponse:
    """The form as a browser posts it (encoded in memory: the test client's own encoding spools a large
    body to a temporary file that it leaves open when the app refuses the body unread)."""
    form: dict[str, Any] = {"file": FileStorage(io.BytesIO(data), name)}
    if csrf is not None:
        form["csrf_token"] = csrf
    boundary, body = encode_multipart(form)
    content_type = f"multipart/form-data; boundary={boundary}"
    return client.post("/console/kb/upload", data=body, content_type=content_type)


def page(client: FlaskClient, query: str = "") -> str:
    response = client.get("/console/kb", query_string={"q": query} if query else None)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def text_of(html: str) -> str:
    """The page's words without its tags (what a reader sees), whitespace folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def stored(bot: Bot) -> tuple[int, list[Any]]:
    """The knowledge base's version and documents: both unchanged when nothing was stored."""
    return bot.runtime.knowledge.store.version(), bot.runtime.knowledge.documents()


@pytest.mark.parametrize("name", FORMATS)
def test_an_uploaded_file_is_listed_searched_and_grounds_an_answer(
    console_bot: Bot, client: FlaskClient, csrf: str, fake_openai: FakeOpenAI, tmp_path: Path, name: str
) -> None:
    data = write(SPEC, tmp_path / name).read_bytes()
    response = upload(client, csrf, name, data)
    assert response.status_code == 303 and "/console/kb?done=added" in response.headers["Location"]
    shown = text_of(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "已加入「红利策略季报」：1 个段落。" in shown
    assert "红利策略季报 1 段" in shown and f"文件 {name}" in shown
    # the search box: the passage, used, with its scores and its document
    found = text_of(page(client, QUESTION))
    assert PASSAGE in found and "采用" in found and "不采用" not in found
    assert "回答这个问题时会给模型 1 个段落" in found and "相关度 " in found and "BM25 " in found
    # the chat: the same passage goes to the model, and the answer ends with the document
    fake_openai.set_behavior(reply="建议超配公用事业、银行和高速公路。")
    reply = console_bot.simulator().send_text("follower", QUESTION).text
    assert reply == "建议超配公用事业、银行和高速公路。\n\n来源：\n1. 红利策略季报"
    assert PASSAGE in fake_openai.chat_requests()[-1]["messages"][-1]["content"]
    entry = console_bot.runtime.admin.audit_log()[0]
    assert entry["command"] == "console:kb_add" and name in entry["args"]


def test_with_embeddings_the_search_box_shows_the_similarity(
    make_bot: Callable[..., Bot], tmp_path: Path
) -> None:
    with FakeEmbeddings() as embeddings:
        bot = make_bot(
            with_worker=False,
            public_base_url=PUBLIC_BASE,
            wechat_admin_openids=[ADMIN],
            embedding_model="fake-embed",
            embedding_base_url=embeddings.base_url,
        )
        client = bot.app.test_client()
        csrf = login(client, bot.app, ADMIN)
        data = write(SPEC, tmp_path / "report.docx").read_bytes()
        assert upload(client, csrf, "report.docx", data).status_code == 303
        found = text_of(page(client, QUESTION))
        assert PASSAGE in found and "相似度 " in found and "fake-embed" in found
        assert bot.runtime.knowledge.documents()[0].embedding == "fake-embed"


def test_the_same_name_replaces_the_document(client: FlaskClient, csrf: str, console_bot: Bot) -> None:
    assert upload(client, csrf, "笔记.md", "# 旧标题\n\n旧的内容。".encode()).status_code == 303
    response = upload(client, csrf, "笔记.md", "# 新标题\n\n新的内容。".encode())
    assert "done=replaced" in response.headers["Location"]
    assert [record.title for record in console_bot.runtime.knowledge.documents()] == ["新标题"]
    assert "已替换同名文档「新标题」" in text_of(
        client.get(response.headers["Location"]).get_data(as_text=True)
    )


def bomb_docx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"0" * (8 * 1024 * 1024))
    return buffer.getvalue()


HOSTILE = [
    ("setup.exe", b"MZ\x90\x00\x03", 415, "不支持这种文件，未加入：「setup.exe」"),
    (
        "report.pdf",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        422,
        "文件内容与扩展名不符，未加入：「report.pdf」不是真正的 PDF 文件",
    ),
    ("notes.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00", 422, "文件内容与扩展名不符"),
    ("report.docx", b"%PDF-1.7 pretending", 422, "不是真正的 DOCX 文件"),
    ("report.docx", bomb_docx(), 422, "拒绝「report.docx」，未加入：这个 DOCX 解压后过大"),
    (
        "report.pdf",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ntrailer garbage",
        422,
        "无法读取「report.pdf」，未加入",
    ),
    ("empty.md", b"   \n\n", 422, "里没有找到文字"),
    ("", b"no name", 400, "请选择要上传的文件。"),
]


@pytest.mark.parametrize(("name", "data", "status", "said"), HOSTILE)
def test_a_hostile_upload_is_refused_with_a_sentence_and_stores_nothing(
    console_bot: Bot, client: FlaskClient, csrf: str, name: str, data: bytes, status: int, said: str
) -> None:
    before = stored(console_bot)
    response = upload(client, csrf, name, data)
    assert response.status_code == status
    assert said in text_of(response.get_data(as_text=True))
    assert stored(console_bot) == before == (0, [])


def test_a_file_over_the_limit_gets_413_with_a_sentence(make_bot: Callable[..., Bot]) -> None:
    limit = 64 * 1024
    bot = make_bot(
        with_worker=False,
        public_base_url=PUBLIC_BASE,
        wechat_admin_openids=[ADMIN],
        kb_upload_max_bytes=limit,
    )
    client = bot.app.test_client()
    csrf = login(client, bot.app, ADMIN)
    just_over = ("段落。\n" * (limit // 10 + 1)).encode()  # over the file limit, within the body's
    far_over = b"a" * (limit * 20)  # the body is refused before it is read (the CSRF check's form)
    for data, whole_page in ((just_over, True), (far_over, False)):
        response = upload(client, csrf, "big.txt", data)
        assert response.status_code == 413
        shown = text_of(response.get_data(as_text=True))
        assert "文件太大，未加入：上传的文件最大 64 KB" in shown
        # refused by the CSRF check's reading of the form: the sentence and a way back, nothing else
        assert ("文档（0 篇" in shown) is whole_page and ("返回知识库" in shown) is not whole_page
    assert stored(bot) == (0, [])


def test_a_document_that_takes_too_long_to_read_is_refused(
    client: FlaskClient, csrf: str, console_bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read in the request: pages of drawing without text, a million empty paragraphs took minutes."""
    monkeypatch.setattr(library, "UPLOAD_MAX_SECONDS", 0.0)  # any reading takes longer than that
    response = upload(client, csrf, "slow.txt", "一段文字。".encode())
    said = "「slow.txt」的内容太复杂，0 秒内没能读完，未加入"
    assert response.status_code == 413 and said in text_of(response.get_data(as_text=True))
    assert stored(console_bot) == (0, [])


def test_a_document_with_too_much_text_is_refused(
    client: FlaskClient, csrf: str, console_bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library, "UPLOAD_MAX_CHARS", 100)
    response = upload(client, csrf, "long.txt", ("很长的一段文字。" * 20).encode())
    said = "「long.txt」的文字太长（网页上传最多 100 字），未加入"
    assert response.status_code == 413 and said in text_of(response.get_data(as_text=True))
    assert stored(console_bot) == (0, [])


def test_another_form_with_a_huge_body_gets_a_plain_413(client: FlaskClient, csrf: str) -> None:
    """Only the upload takes a large body: another form over the webhook's limit gets a plain 413."""
    response = client.post("/console/kb/remove", data={"csrf_token": csrf, "id": "x" * 100_000})
    assert response.status_code == 413 and "text/plain" in response.content_type


def test_a_document_is_removed(console_bot: Bot, client: FlaskClient, csrf: str, tmp_path: Path) -> None:
    upload(client, csrf, "report.md", write(SPEC, tmp_path / "report.md").read_bytes())
    doc_id = console_bot.runtime.knowledge.documents()[0].id
    response = client.post("/console/kb/remove", data={"csrf_token": csrf, "id": doc_id})
    assert response.status_code == 303
    shown = text_of(client.get(response.headers["Location"]).get_data(as_text=True))
    assert f"已删除文档 {doc_id}。" in shown
    assert console_bot.runtime.knowledge.documents() == []
    assert "没有段落与这个问题有共同的词" in text_of(page(client, QUESTION))
    assert console_bot.runtime.admin.audit_log()[0]["command"] == "console:kb_remove"
    again = client.post("/console/kb/remove", data={"csrf_token": csrf, "id": doc_id})
    assert again.status_code == 404 and "没有这篇文档" in again.get_data(as_text=True)


@pytest.fixture
def active_bot(make_bot: Callable[..., Bot]) -> Iterator[Bot]:
    yield make_bot(public_base_url=PUBLIC_BASE, wechat_admin_openids=[ADMIN], wechat_reply_mode="active")


def test_the_sync_runs_as_a_job_and_its_report_shows_on_the_page(
    active_bot: Bot, fake_wechat: FakeWeChatAPI
) -> None:
    client = active_bot.app.test_client()
    csrf = login(client, active_bot.app, ADMIN)
    assert "还没有同步过" in text_of(page(client))
    fake_wechat.published = [published_item("ART1", 1_700_000_000, SPEC)]
    response = client.post("/console/kb/sync", data={"csrf_token": csrf})
    assert response.status_code == 303 and response.headers["Location"].endswith("done=sync")
    store = active_bot.runtime.knowledge.store
    wait_for(lambda: store.sync_record().get("status") == "done" and not store.sync_running())
    active_bot.ext["jobs"].broker.join(QUEUE, timeout=15_000)
    shown = text_of(page(client))
    report = texts.KB_SYNC_REPORT.format(
        source=texts.KB_SOURCE_FREEPUBLISH, added=1, updated=0, removed=0, failed=0, unchanged=0
    )
    assert "已完成" in shown and report in shown
    assert "红利策略季报 1 段" in shown and "公众号文章" in shown
    # the report is the page's: no chat message about a sync the admin started here
    assert fake_wechat.sent_messages() == []
    assert active_bot.runtime.admin.audit_log()[0]["command"] == "console:kb_sync"


def test_a_running_sync_shows_and_refreshes_and_a_second_waits(
    client: FlaskClient, csrf: str, console_bot: Bot
) -> None:
    store = console_bot.runtime.knowledge.store
    assert store.claim_sync("someone-else")
    store.start_sync_record("admin-other")
    html = page(client)
    assert "同步中" in text_of(html) and '<meta http-equiv="refresh" content="3">' in html
    response = client.post("/console/kb/sync", data={"csrf_token": csrf})
    assert response.status_code == 409 and "已有一次同步正在进行" in response.get_data(as_text=True)


def test_the_sync_needs_the_accounts_credentials(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot(
        with_worker=False, public_base_url=PUBLIC_BASE, wechat_admin_openids=[ADMIN], wechat_secret=""
    )
    client = bot.app.test_client()
    csrf = login(client, bot.app, ADMIN)
    response = client.post("/console/kb/sync", data={"csrf_token": csrf})
    assert response.status_code == 409 and "WECHAT_APPID 和 WECHAT_SECRET" in response.get_data(as_text=True)
    assert not bot.runtime.knowledge.store.sync_running()


def test_no_post_passes_without_the_csrf_token(
    console_bot: Bot, client: FlaskClient, csrf: str, tmp_path: Path
) -> None:
    data = write(SPEC, tmp_path / "report.md").read_bytes()
    assert upload(client, None, "report.md", data).status_code == 400
    assert upload(client, "forged" + csrf[6:], "report.md", data).status_code == 400
    assert stored(console_bot) == (0, [])
    upload(client, csrf, "report.md", data)
    before = stored(console_bot)
    assert client.post("/console/kb/remove", data={"id": before[1][0].id}).status_code == 400
    assert client.post("/console/kb/sync").status_code == 400
    assert stored(console_bot) == before and not console_bot.runtime.knowledge.store.sync_record()
    assert [entry["command"] for entry in console_bot.runtime.admin.audit_log()].count("console:kb_add") == 1


def test_document_text_is_escaped_everywhere(client: FlaskClient, csrf: str) -> None:
    hostile = (
        "<html><head><title>&lt;script&gt;alert(1)&lt;/script&gt;</title></head><body>"
        "<p>红利策略 &lt;img src=x onerror=alert(2)&gt; 建议超配银行。</p></body></html>"
    )
    assert upload(client, csrf, "<b>x</b>.html", hostile.encode()).status_code == 303
    for html in (page(client), page(client, "红利策略建议超配银行")):
        assert "<script>alert(1)" not in html and "<img src=x" not in html and "<b>x</b>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in page(client, "红利策略建议超配银行")


def test_a_stranger_sees_nothing_of_the_page(console_bot: Bot) -> None:
    client = console_bot.app.test_client()
    assert client.get("/console/kb").status_code == 303
    assert upload(client, None, "report.md", b"# x\n\ny").status_code == 403
    assert stored(console_bot) == (0, [])
