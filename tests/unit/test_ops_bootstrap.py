"""bot/ops/bootstrap.py: every operator tool reads the same .env, DATA_DIR and Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings
from bot.ops import bootstrap
from bot.ops.redis_server import url_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project .env with the required settings (an LLM included), and no setting in the environment."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    path = tmp_path / "project" / ".env"
    path.parent.mkdir()
    path.write_text(f"WECHAT_TOKEN=from-project\nOPENAI_API_KEY=k\nDATA_DIR={tmp_path / 'data'}\n")
    return path


def test_the_project_env_counts_not_one_in_the_working_directory(
    env_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = tmp_path / "elsewhere"
    planted.mkdir()
    (planted / ".env").write_text("WECHAT_TOKEN=planted\nREDIS_URL=redis://attacker.example:6379/0\n")
    monkeypatch.chdir(planted)
    settings = bootstrap.settings(env_file)
    assert settings.wechat_token == "from-project"
    assert settings.redis_url == ""  # unset in the project: `make run` embeds one
    assert bootstrap.environment(env_file)["WECHAT_TOKEN"] == "from-project"


def test_the_environment_wins_over_the_env_file(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECHAT_TOKEN", "from-environment")
    assert bootstrap.settings(env_file).wechat_token == "from-environment"


def test_data_dir_is_relative_to_the_project_not_the_working_directory(
    env_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", "data")
    assert bootstrap.settings(env_file).data_dir == str(ROOT / "data")
    assert bootstrap.configured_data_dir(env_file) == ROOT / "data"
    monkeypatch.delenv("DATA_DIR")
    assert bootstrap.configured_data_dir(env_file) == tmp_path / "data"  # absolute, from the file


def test_unset_redis_url_finds_the_redis_of_a_running_make_run(env_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL: unset, and no `make run`"):
        bootstrap.settings(env_file, running_redis=True)
    noted = url_file(tmp_path / "data")
    noted.parent.mkdir(parents=True)
    noted.write_text("redis://127.0.0.1:6390/0\n")
    assert bootstrap.settings(env_file, running_redis=True).redis_url == "redis://127.0.0.1:6390/0"


def test_a_set_redis_url_is_used_as_it_is(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://10.0.0.5:6379/1")
    assert bootstrap.settings(env_file, running_redis=True).redis_url == "redis://10.0.0.5:6379/1"
    assert bootstrap.settings(env_file, redis_url="redis://10.0.0.6:6379/0").redis_url == (
        "redis://10.0.0.6:6379/0"
    )


def test_settings_given_by_the_caller_count_as_an_llm_configured(env_file: Path) -> None:
    env_file.write_text(env_file.read_text().replace("OPENAI_API_KEY=k\n", ""))
    assert bootstrap.uses_offline_llm(bootstrap.settings(env_file, offline_llm=True))
    given = bootstrap.settings(env_file, offline_llm=True, openai_base_url="http://127.0.0.1:8001/v1")
    assert not bootstrap.uses_offline_llm(given) and given.llm_backend == "openai"


def test_a_bad_setting_ends_a_tool_with_a_message_naming_it(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "WECHAT_TOKEN": "t", "TIMEZONE": "Mars/Olympus", "OPENAI_API_KEY": "k"}
    result = subprocess.run(
        [sys.executable, "-m", "bot.ops.admin_code"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("cannot make a code: invalid configuration: TIMEZONE:"), result.stderr


TOOLS = [
    ("bot.ops.admin_code", [], "make a code"),
    ("bot.ops.console_link", [], "make a console link"),
    ("bot.ops.kb", ["list"], "use the knowledge base"),
]


def run_tool(
    module: str, args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": "/usr/bin:/bin",
        "WECHAT_TOKEN": "t",
        "OPENAI_API_KEY": "k",
        "PUBLIC_BASE_URL": "https://b.example",
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env={**base, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(("module", "args", "doing"), TOOLS)
def test_a_tool_whose_redis_does_not_answer_says_so(
    module: str,
    args: list[str],
    doing: str,
    tmp_path: Path,
    refused_port: int,
) -> None:
    """They ended with a redis ConnectionError traceback; `make check`'s words now."""
    url = f"redis://127.0.0.1:{refused_port}/0"
    result = run_tool(module, args, {"REDIS_URL": url}, tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"cannot {doing}: REDIS_URL: cannot use {url}: "), result.stderr
    assert "(is redis-server running there?)" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("module", "args", "doing"), TOOLS)
def test_a_tool_with_the_stale_note_of_a_killed_make_run_says_so(
    module: str,
    args: list[str],
    doing: str,
    tmp_path: Path,
    refused_port: int,
) -> None:
    noted = url_file(tmp_path / "data")
    noted.parent.mkdir(parents=True)
    noted.write_text(f"redis://:secret-pw@127.0.0.1:{refused_port}/0\n")
    result = run_tool(module, args, {"DATA_DIR": str(tmp_path / "data")}, tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"cannot {doing}: embedded Redis: redis://:***@127.0.0.1:"), result.stderr
    assert f"noted in {noted}, does not answer" in result.stderr
    assert result.stderr.rstrip().endswith("is `make run` running?") and "secret-pw" not in result.stderr
