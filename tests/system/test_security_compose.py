"""Docker Compose hands the project's .env (WeChat and LLM secrets) to the bot's own services only."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker" / "docker-compose.yml"


def services() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    found: dict[str, Any] = loaded["services"]
    return found


def env_files(service: dict[str, Any]) -> list[Path]:
    given = service.get("env_file", [])
    return [(COMPOSE.parent / path).resolve() for path in ([given] if isinstance(given, str) else given)]


def test_only_web_and_worker_read_the_env_file() -> None:
    """Before: redis and the FastChat containers got every secret of .env in their environment."""
    readers = {name for name, service in services().items() if env_files(service)}
    assert readers == {"web", "worker"}
    for name in readers:
        assert env_files(services()[name]) == [ROOT / ".env"], name


def test_the_fastchat_worker_still_gets_its_model_path_and_nothing_else() -> None:
    worker = services()["fastchat-worker"]
    assert worker["environment"] == {"FASTCHAT_MODEL_PATH": "${FASTCHAT_MODEL_PATH:-}"}
    command = shlex.split(worker["command"][2].replace("$$", "$"))
    assert command[command.index("--model-path") + 1] == "${FASTCHAT_MODEL_PATH:-lmsys/vicuna-7b-v1.5}"
    for name in ("redis", "fastchat-controller"):
        assert "environment" not in services()[name], name
