"""deploy/.env.example and the README's settings table say what bot/config.py enforces."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from annotated_types import Ge, Le

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / ".env.example"
README = ROOT / "README.md"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_env_example", ROOT / "deploy" / "gen_env_example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def field_bounds(name: str) -> tuple[object, object]:
    metadata = Settings.model_fields[name].metadata
    low = next(item.ge for item in metadata if isinstance(item, Ge))
    high = next(item.le for item in metadata if isinstance(item, Le))
    return low, high


def comment_above(key: str) -> str:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}="))
    return lines[index - 1]


def settings_table() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## Configuration") : text.index("## What users can send")]


def test_the_example_states_the_page_size_range_the_code_enforces() -> None:
    low, high = field_bounds("wechat_max_reply_bytes")
    assert f"page size in UTF-8 bytes, {low}-{high};" in comment_above("WECHAT_MAX_REPLY_BYTES")


def test_the_ranges_in_the_example_follow_the_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """Change a bound in the code and the example's text changes with it."""
    gen = generator()
    field = Settings.model_fields["wechat_max_reply_bytes"]
    monkeypatch.setattr(field, "metadata", [Ge(700), Le(1900)])
    assert "# page size in UTF-8 bytes, 700-1900;" in gen.render()
    assert gen.bounds("llm_temperature") == "0-2"
    with pytest.raises(ValueError, match="WELCOME_TEXT: the comment shows"):
        gen.bounds("welcome_text")


def test_the_readme_states_the_page_size_range_the_code_enforces() -> None:
    low, high = field_bounds("wechat_max_reply_bytes")
    row = next(
        line for line in settings_table().splitlines() if line.startswith("| `WECHAT_MAX_REPLY_BYTES`")
    )
    assert f"{low}–{high}" in row


def test_every_setting_is_in_the_readme_table() -> None:
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", settings_table()))
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in named]
    assert not missing, f"add to the README's settings table: {missing}"


def test_timezone_is_documented_with_its_default() -> None:
    assert comment_above("TIMEZONE") == (
        "# the day for quotas and daily statistics: an IANA time zone, e.g. Asia/Shanghai or UTC"
    )
    assert "TIMEZONE=Asia/Shanghai\n" in EXAMPLE.read_text(encoding="utf-8")
    row = next(line for line in settings_table().splitlines() if line.startswith("| `TIMEZONE`"))
    assert "`Asia/Shanghai`" in row and "the day for quotas and daily statistics" in row
