"""The house rules of the layout, read from the code's own imports (README, "Layout")."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports(path: Path) -> Iterator[str]:
    """Every module a file imports, absolute names (the project uses no relative imports)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def room(path: Path) -> str:
    """The concern a file belongs to: its subpackage of bot/ (or the top-level module)."""
    parts = path.relative_to(ROOT / "bot").with_suffix("").parts
    return parts[0]


def test_bot_never_imports_handlers_or_testing() -> None:
    for path in sources("bot"):
        wrong = [name for name in imports(path) if name.split(".")[0] in ("handlers", "testing", "tests")]
        assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


def test_only_the_stores_build_redis_keys() -> None:
    for folder in ("bot", "handlers"):
        for path in sources(folder):
            if path.is_relative_to(ROOT / "bot" / "store"):
                continue
            found = [name for name in imports(path) if name in ("bot.store.keys", "bot.store.keys.keys")]
            assert not found, f"{path.relative_to(ROOT)} builds Redis keys; ask a store of bot/store/"
    assert all(name != "bot.store.keys" for name in imports(ROOT / "app.py"))


def test_the_subpackages_of_bot_import_one_way() -> None:
    """No cycle between the rooms of bot/ (a file-level cycle is a room-level cycle too)."""
    edges: dict[str, set[str]] = {}
    for path in sources("bot"):
        here = room(path)
        for name in imports(path):
            parts = name.split(".")
            if parts[0] == "bot" and len(parts) > 1 and parts[1] != here:
                target = parts[1]
                if (ROOT / "bot" / target).is_dir() or (ROOT / "bot" / f"{target}.py").is_file():
                    edges.setdefault(here, set()).add(target)
    cycle = _find_cycle(edges)
    assert cycle is None, f"import cycle between rooms of bot/: {' -> '.join(cycle or [])}"


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for nxt in sorted(edges.get(node, ())):
            if (found := visit(nxt)) is not None:
                return found
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(edges):
        if (found := visit(start)) is not None:
            return found
    return None


def test_every_user_facing_text_lives_in_texts() -> None:
    """No Chinese string literal outside bot/texts.py in the code that answers users (docstrings and
    comments aside): an operator changes every text in one file. Settings' defaults (config.py, e.g.
    SYSTEM_PROMPT) are changed through the settings instead, and operator tools speak English. The
    test's reading of "user-facing": a literal with Chinese in it and no English word (operators'
    messages are English that may name a place of 公众号后台)."""
    for folder in ("bot", "handlers"):
        for path in sources(folder):
            if path.name in ("texts.py", "config.py") or path.is_relative_to(ROOT / "bot" / "ops"):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
                and node.body
                and isinstance(node.body[0], ast.Expr)
            }
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in docstrings
                ):
                    chinese = any("\u4e00" <= char <= "\u9fff" for char in node.value)
                    assert not chinese or re.search("[A-Za-z]{3}", node.value), (
                        f"{path.relative_to(ROOT)}:{node.lineno}: user-facing text {node.value[:30]!r}"
                    )
