"""`make kb-add FILES="…"`, `make kb-list`, `make kb-remove ID=…`, `make kb-sync`, `make kb-search Q="…"`:
the knowledge base from the server's shell.

    python -m bot.ops.kb add report.pdf notes.md page.html   # Markdown, text, HTML, PDF, DOCX
    python -m bot.ops.kb list
    python -m bot.ops.kb remove ID
    python -m bot.ops.kb sync                                # the account's articles, now
    python -m bot.ops.kb search "问题"                        # the passages a question would get

Adding a file whose name is already in the knowledge base replaces that document. Every process of
the bot sees a change at its next question (no restart). Exit status 1 when something failed.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
import uuid
from datetime import datetime
from pathlib import Path

from bot.knowledge.embeddings import EmbeddingError
from bot.knowledge.formats import SUFFIXES, UnreadableFile
from bot.knowledge.index import Hit
from bot.knowledge.sync import run_sync
from bot.ops import bootstrap
from bot.runtime import Runtime


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = bootstrap.load("use the knowledge base", running_redis=True, offline_llm=True)  # or exits 1
    runtime = Runtime(settings)
    try:
        return int(args.run(runtime, args))
    finally:
        runtime.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot.ops.kb", description="The bot's knowledge base.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    add = commands.add_parser("add", help=f"add or replace files ({', '.join(sorted(SUFFIXES))})")
    add.add_argument("files", nargs="+", type=Path)
    add.set_defaults(run=add_files)
    commands.add_parser("list", help="list the documents").set_defaults(run=list_documents)
    remove = commands.add_parser("remove", help="remove a document by its id (see list)")
    remove.add_argument("id")
    remove.set_defaults(run=remove_document)
    commands.add_parser("sync", help="sync the account's published articles now").set_defaults(run=sync)
    search = commands.add_parser("search", help="the passages a question would be given")
    search.add_argument("query", nargs="+")
    search.set_defaults(run=search_passages)
    return parser


def add_files(runtime: Runtime, args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            added = runtime.knowledge.add_file(path)
        except (UnreadableFile, EmbeddingError) as exc:
            print(f"failed    {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        record = added.record
        verb = "replaced" if added.replaced else "added"
        print(f"{verb:<9} {record.id}  {record.title}  ({record.chunks} passages, from {path.name})")
    return 1 if failed else 0


def list_documents(runtime: Runtime, args: argparse.Namespace) -> int:
    records = runtime.knowledge.documents()
    if not records:
        print('The knowledge base is empty: make kb-add FILES="…", or /kb sync in the chat.')
        return 0
    zone = runtime.settings.zone
    rows = [("ID", "TITLE", "SOURCE", "CHUNKS", "ADDED")]
    for record in records:
        source = f"file {record.name}" if record.source == "file" else f"article {record.url or record.key}"
        added = datetime.fromtimestamp(record.added, zone).strftime("%Y-%m-%d %H:%M")
        rows.append((record.id, _cut(record.title, 40), _cut(source, 60), str(record.chunks), added))
    widths = [max(_width(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(_pad(cell, width) for cell, width in zip(row, widths, strict=True)).rstrip())
    total = sum(record.chunks for record in records)
    print(f"{len(records)} documents, {total} passages")
    return 0


def remove_document(runtime: Runtime, args: argparse.Namespace) -> int:
    removed = runtime.knowledge.remove(args.id)
    if removed is None:
        print(f"no document {args.id} (make kb-list shows the ids)", file=sys.stderr)
        return 1
    print(f"removed {removed.id}  {removed.title}")
    return 0


def sync(runtime: Runtime, args: argparse.Namespace) -> int:
    if not (runtime.settings.wechat_appid and runtime.settings.wechat_secret):
        print(
            "syncing the account's articles needs WECHAT_APPID and WECHAT_SECRET (see make check)",
            file=sys.stderr,
        )
        return 1
    token = uuid.uuid4().hex
    if not runtime.knowledge.store.claim_sync(token):
        print(
            "a sync is running already (/kb in the chat shows it); try again when it is done", file=sys.stderr
        )
        return 1
    print("syncing the account's articles…", flush=True)
    report = run_sync(runtime.knowledge, runtime.wechat, token, by="make kb-sync")
    print(report)
    status = runtime.knowledge.store.sync_record().get("status")
    return 0 if status == "done" else 1


def search_passages(runtime: Runtime, args: argparse.Namespace) -> int:
    query = " ".join(args.query)
    hits = runtime.knowledge.search(query)
    if not hits:
        print("no passage shares a word with the question")
        return 0
    top_k = runtime.settings.kb_top_k
    used = [hit for hit in hits if hit.relevant][:top_k]
    for rank, hit in enumerate(hits[:10], 1):
        print(_describe(rank, hit, hit in used))
    threshold = runtime.settings.kb_min_relevance
    print(
        f"{len(used)} passage(s) would be given to the model (relevance threshold {threshold}, top {top_k})"
    )
    return 0


def _describe(rank: int, hit: Hit, used: bool) -> str:
    passage = hit.passage
    similarity = "" if hit.similarity is None else f" similarity {hit.similarity:.2f}"
    mark = "USED" if used else "    "
    text = " ".join(passage.text.split())
    return (
        f"{mark} {rank:>2}. relevance {hit.relevance:.2f} bm25 {hit.bm25:.2f}{similarity}  "
        f"[{passage.doc_id}] {passage.title}\n        {_cut(text, 100)}"
    )


def _cut(text: str, length: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


def _width(text: str) -> int:
    """Columns on a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
