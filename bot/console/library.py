"""The console's knowledge-base page (/console/kb): the documents, uploading files, the account's
article sync and its report, removing a document, and a search box showing the passages a question
would be given.

    GET  /console/kb                 the page; ?q=QUESTION adds what retrieval finds for it
    POST /console/kb/upload          a file (multipart, field "file"): read and indexed in the request
    POST /console/kb/sync            starts the sync of the account's articles (a job)
    POST /console/kb/remove          removes a document (field "id")

**An upload is indexed in the request**, through the code `make kb-add` runs (read_data in
bot/knowledge/formats.py, then KnowledgeBase.add): the admin sees at once what was added or why it was
refused, with nothing to poll and no file parked in Redis for a worker. That holds because the work is
bounded before it can grow: the body (KB_UPLOAD_MAX_BYTES: 413 before it is read) and the text
(UPLOAD_MAX_CHARS: the PDF and DOCX readers stop as soon as they have read more, so a huge document
costs no more than a refused one). Measured on the development machine (two cores shared with other
work, so a range): a PDF of 250,000 Chinese characters reads in 2.3–3.7 s and indexes in 1–4 s (jieba
is pure Python), a DOCX of as much reads in 0.3 s; 2.5 million characters would take 17 s to index
alone — hence the cap, well inside nginx's 30 s proxy_read_timeout (such a document goes in with
`make kb-add`, which has no cap). An upload takes one of a web process's WEB_THREADS for those
seconds and shares the GIL with the webhook's threads, which mostly wait on Redis: while a 250,000-
character PDF was indexed (4 s), another client's requests to the same process took 12 ms instead of
1.4 (p50), 36 ms instead of 3 (p95) — tens of milliseconds for a push, against WeChat's 5 s.

**The sync runs as a job** (as /kb sync does): it lists every article through WeChat's API and may
take minutes; its state and report are the knowledge store's sync record, which this page reads (it
reloads itself while the sync runs).

Documents are untrusted: every title, name and passage is escaped by Jinja (no `|safe` here), and a
link is shown only when it is a plain http(s) address.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse

from bot.console.auth import allow_upload, audit
from bot.knowledge.embeddings import EmbeddingError
from bot.knowledge.formats import SUFFIXES, UnreadableFile, read_data
from bot.knowledge.index import Hit
from bot.runtime import Runtime
from bot.store.knowledge import DocumentRecord

log = logging.getLogger(__name__)

#: a document whose text is longer than this is refused by the console (it goes in with make kb-add):
#: about 1,000 passages, a few seconds of indexing
UPLOAD_MAX_CHARS = 300_000
#: an upload is read in the request: a file that takes longer (pages of drawing, a million empty
#: paragraphs) is refused, before nginx's 30 s proxy timeout gives the admin a 504 and the thread goes on
UPLOAD_MAX_SECONDS = 20.0
#: the HTTP status of a refused file, by the reader's reason (any other: 422, unprocessable)
REFUSAL_STATUS = {"kind": 415, "too_long": 413, "too_slow": 413}
#: what a multipart body holds besides the file (boundaries, headers, the CSRF field)
FORM_OVERHEAD_BYTES = 64 * 1024
#: passages shown for a question in the search box
SHOWN_HITS = 10
#: a file's name is kept to this many characters (its suffix included)
NAME_CHARS = 100
#: the page reloads itself this often (seconds) while a sync runs
REFRESH_SECONDS = 3
#: a document's id (bot/knowledge/documents.py: ten hex digits)
DOC_ID = re.compile(r"[0-9a-f]{10}")
#: characters that never belong in a file's name as shown and stored (controls, separators)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True)
class Message:
    """What the page tells the admin after an action: `code` picks the sentence (in the template),
    `values` fill it in; `error` marks a refusal."""

    code: str
    values: dict[str, Any] = field(default_factory=dict)
    error: bool = False


class Refused(Exception):
    """An upload refused before or while reading it: the message, and the HTTP status to send."""

    def __init__(self, message: Message, status: int) -> None:
        super().__init__(message.code)
        self.message, self.status = message, status


def register(bp: Blueprint, runtime: Runtime) -> None:
    """The knowledge-base page and its actions on the console's blueprint."""
    settings = runtime.settings
    kb = runtime.knowledge

    @bp.get("/kb")
    def knowledge() -> Response:
        return page(runtime, done_message(runtime))

    @bp.post("/kb/upload")
    @allow_upload(settings.kb_upload_max_bytes + FORM_OVERHEAD_BYTES)
    def knowledge_upload() -> BaseResponse:
        # a token sent as the X-CSRF-Token header left the form unread by the check: same limit here
        request.max_content_length = settings.kb_upload_max_bytes + FORM_OVERHEAD_BYTES
        try:
            name, data = received_file(settings.kb_upload_max_bytes)
            record, replaced = index_upload(runtime, name, data)
        except Refused as refused:
            return page(runtime, refused.message, refused.status)
        audit(runtime, "kb_add", f"{name} → {record.id} ({record.chunks} passages)")
        done = "replaced" if replaced else "added"
        return redirect(url_for("console.knowledge", done=done, doc=record.id), 303)

    @bp.post("/kb/sync")
    def knowledge_sync() -> BaseResponse:
        if not (settings.wechat_appid and settings.wechat_secret):
            return page(runtime, Message("sync_credentials", error=True), 409)
        token = uuid.uuid4().hex
        if not kb.store.claim_sync(token):
            return page(runtime, Message("sync_busy", error=True), 409)
        current_app.extensions["wxbot"]["jobs"].enqueue_kb_sync(g.console_admin, token, notify=False)
        audit(runtime, "kb_sync", "the account's articles")
        return redirect(url_for("console.knowledge", done="sync"), 303)

    @bp.post("/kb/remove")
    def knowledge_remove() -> BaseResponse:
        doc_id = request.form.get("id", "").strip()
        removed = kb.remove(doc_id) if doc_id else None
        if removed is None:
            return page(runtime, Message("remove_missing", error=True), 404)
        audit(runtime, "kb_remove", f"{removed.id} {removed.title}")
        return redirect(url_for("console.knowledge", done="removed", doc=removed.id), 303)

    @bp.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Response:
        """A body over its limit (the upload's, or the webhook's for any other form): 413 with a
        sentence, before the body is read. Raised by the CSRF check, which reads the form first."""
        if request.endpoint != "console.knowledge_upload":
            return Response(exc.name, status=413, content_type="text/plain")
        message = too_large_message(settings.kb_upload_max_bytes)
        if not g.get("console_admin"):  # refused by the check before it had signed the admin in
            html = render_template("console/knowledge.html", message=message, minimal=True)
            return Response(html, status=413, mimetype="text/html")
        return page(runtime, message, 413)


def received_file(limit: int) -> tuple[str, bytes]:
    """The uploaded file's name and bytes (Refused when there is none, or it is over `limit`)."""
    upload = request.files.get("file")
    name = upload_name(upload.filename or "") if upload is not None else ""
    if upload is None or not name:
        raise Refused(Message("no_file", error=True), 400)
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise Refused(too_large_message(limit), 413)
    return name, data


def too_large_message(limit: int) -> Message:
    return Message("too_large", {"limit": human_size(limit)}, error=True)


def upload_name(filename: str) -> str:
    """The name a document is kept under: the browser's file name without any directory, control
    characters or separators, Unicode-normalised, at most NAME_CHARS (its suffix kept). Chinese names
    stay Chinese (werkzeug's secure_filename would drop them)."""
    base = re.split(r"[/\\]", filename)[-1]
    name = " ".join(_UNSAFE.sub(" ", unicodedata.normalize("NFC", base)).split()).strip(". ")
    if len(name) > NAME_CHARS:
        suffix = PurePosixPath(name).suffix[:10]
        name = name[: NAME_CHARS - len(suffix)] + suffix
    return name


def index_upload(runtime: Runtime, name: str, data: bytes) -> tuple[DocumentRecord, bool]:
    """Read the file as `make kb-add` does and index it; Refused with the reason when it cannot be."""
    try:
        document = read_data(name, data, max_chars=UPLOAD_MAX_CHARS, max_seconds=UPLOAD_MAX_SECONDS)
    except UnreadableFile as exc:
        log.info("console upload refused: %s", exc)
        raise Refused(unreadable_message(name, exc), REFUSAL_STATUS.get(exc.reason, 422)) from None
    try:
        added = runtime.knowledge.add(document)
    except EmbeddingError as exc:
        log.warning("console upload not indexed: %s", exc)
        raise Refused(Message("embedding", {"name": name}, error=True), 503) from None
    return added.record, added.replaced


def unreadable_message(name: str, exc: UnreadableFile) -> Message:
    """What the page says of a refused file: by the reader's one-word reason (wrong kind, content not
    what the name says, zip bomb, encrypted, no text, damaged)."""
    kind = SUFFIXES.get(PurePosixPath(name).suffix.lower(), "")
    values = {
        "name": name,
        "kind": kind.upper(),
        "limit": f"{UPLOAD_MAX_CHARS:,}",
        "seconds": f"{UPLOAD_MAX_SECONDS:.0f}",
    }
    return Message(f"file_{exc.reason}", values, error=True)


def done_message(runtime: Runtime) -> Message | None:
    """The sentence after a redirect (?done=…): what was just added, replaced, removed or started."""
    done = request.args.get("done", "")
    if done in ("added", "replaced"):
        record = runtime.knowledge.store.document(request.args.get("doc", ""))
        if record is not None:
            return Message(done, {"title": record.title, "chunks": record.chunks})
    if done == "removed" and DOC_ID.fullmatch(doc_id := request.args.get("doc", "")):
        return Message("removed", {"id": doc_id})  # the id, not a title: the address reflects nothing else
    if done == "sync":
        return Message("sync_started")
    return None


def page(runtime: Runtime, message: Message | None = None, status: int = 200) -> Response:
    """The page, with `message` above it (status: the refusal's, or 200)."""
    kb, zone = runtime.knowledge, runtime.settings.zone
    query = " ".join(request.args.get("q", "").split())[:200] if request.method == "GET" else ""
    sync = sync_state(runtime)
    html = render_template(
        "console/knowledge.html",
        message=message,
        documents=[row(record, zone) for record in reversed(kb.documents())],
        query=query,
        results=search(runtime, query) if query else [],
        sync=sync,
        refresh=REFRESH_SECONDS if sync["state"] == "running" else 0,
        max_size=human_size(runtime.settings.kb_upload_max_bytes),
        accept=",".join(sorted(SUFFIXES)),
        kinds=" ".join(sorted(SUFFIXES)),
        retrieval=retrieval_settings(runtime.settings),
    )
    return Response(html, status=status, mimetype="text/html")


def retrieval_settings(settings: Any) -> dict[str, Any]:
    """The few settings the page states (never the Settings object: it holds the secrets)."""
    names = ("kb_min_relevance", "kb_min_similarity", "embedding_model", "kb_top_k")
    return {name: getattr(settings, name) for name in names}


def row(record: DocumentRecord, zone: Any) -> dict[str, Any]:
    """A document as the list shows it; the link only when it is a plain http(s) address."""
    url = record.url if record.url.startswith(("https://", "http://")) else ""
    return {
        "id": record.id,
        "title": record.title,
        "source": record.source,
        "name": record.name,
        "url": url,
        "chunks": record.chunks,
        "added": when(record.added, zone),
        "updated": when(record.updated, zone),
    }


def search(runtime: Runtime, query: str) -> list[dict[str, Any]]:
    """The candidates retrieval ranks for `query`, best first, the ones answering would use marked —
    KnowledgeBase.search and the same KB_TOP_K cut as KnowledgeBase.retrieve."""
    hits = runtime.knowledge.search(query)
    used = [hit for hit in hits if hit.relevant][: runtime.settings.kb_top_k]
    return [result(hit, hit in used) for hit in hits[:SHOWN_HITS]]


def result(hit: Hit, used: bool) -> dict[str, Any]:
    passage = hit.passage
    url = passage.url if passage.url.startswith(("https://", "http://")) else ""
    return {
        "used": used,
        "relevance": hit.relevance,
        "bm25": hit.bm25,
        "similarity": hit.similarity,
        "title": passage.title,
        "section": passage.section,
        "text": passage.text,
        "doc_id": passage.doc_id,
        "source": passage.source,
        "name": passage.name,
        "url": url,
    }


def sync_state(runtime: Runtime) -> dict[str, Any]:
    """The last sync: "never", "running", "died" (its worker vanished: the lock expired) or "finished",
    with its times, who started it and its report."""
    store, zone = runtime.knowledge.store, runtime.settings.zone
    record = store.sync_record()
    status = record.get("status", "")
    if status == "running":
        state = "running" if store.sync_running() else "died"
    else:
        state = "finished" if record.get("finished") else "never"
    return {
        "state": state,
        "ok": status == "done",
        "started": when(float(record.get("started") or 0), zone) if record.get("started") else "",
        "finished": when(float(record.get("finished") or 0), zone) if record.get("finished") else "",
        "by": record.get("by", ""),
        "report": record.get("result", ""),
        "configured": bool(runtime.settings.wechat_appid and runtime.settings.wechat_secret),
    }


def when(timestamp: float, zone: Any) -> str:
    return datetime.fromtimestamp(timestamp, zone).strftime("%Y-%m-%d %H:%M")


def human_size(size: int) -> str:
    """10485760 → "10 MB" (binary megabytes, as file managers mostly show them)."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.3g} MB"
    return f"{size / 1024:.3g} KB"
