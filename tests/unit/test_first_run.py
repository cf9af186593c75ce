"""The README's first run: `cp deploy/.env.example .env`, set WECHAT_TOKEN, `make run` → the local model.

The local model itself is not started here (its venv installs torch; tests/system/test_local_llm.py
does that): these check the decision `make run` takes from the example, and the message an operator
reads when the LLM settings are half done.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.config import DEFAULT_OPENAI_BASE_URL, ConfigError, Settings
from bot.ops import bootstrap
from bot.ops.local_llm import LOCAL_MAX_TOKENS, MODEL_NAME, LocalCluster, wanted

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / ".env.example"
LLM_CHOICE = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FASTCHAT_CONTROLLER_URL")


@pytest.fixture
def project_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example copied as a project's .env with WECHAT_TOKEN set, and no setting in the environment."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    env_file = tmp_path / ".env"
    shutil.copy(EXAMPLE, env_file)
    text = env_file.read_text(encoding="utf-8")
    assert text.count("\nWECHAT_TOKEN=\n") == 1
    env_file.write_text(text.replace("\nWECHAT_TOKEN=\n", "\nWECHAT_TOKEN=first-run\n"), encoding="utf-8")
    return env_file


def set_line(env_file: Path, key: str, value: str) -> None:
    lines = env_file.read_text(encoding="utf-8").splitlines()
    found = [index for index, line in enumerate(lines) if line.startswith(f"{key}=")]
    assert len(found) == 1, key
    lines[found[0]] = f"{key}={value}"
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_the_example_with_a_token_starts_the_local_model(project_env: Path) -> None:
    """What `make run` (bot.ops.run: bootstrap.load(..., offline_llm=True)) decides from the example."""
    assert wanted(bootstrap.environment(project_env))
    settings = bootstrap.settings(project_env, offline_llm=True)
    assert bootstrap.uses_offline_llm(settings)
    assert settings.llm_backend == "fastchat" and settings.fastchat_model == MODEL_NAME
    assert settings.wechat_token == "first-run"
    assert settings.redis_url == ""  # `make run` embeds a Redis


def test_the_example_keeps_the_local_models_short_answers(
    project_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` loads .env into its environment before the cluster sets its cap: a copied example
    must not pass the default (1024 tokens, a minute of writing on the CPU) off as the operator's
    choice. Written in the example, LLM_MAX_TOKENS still wins."""
    for name, value in bootstrap.environment(project_env).items():
        monkeypatch.setenv(name, value)  # what bootstrap.load_env() does with the project's .env
    assert LocalCluster(tmp_path).env()["LLM_MAX_TOKENS"] == str(LOCAL_MAX_TOKENS)
    monkeypatch.setenv("LLM_MAX_TOKENS", "200")
    assert "LLM_MAX_TOKENS" not in LocalCluster(tmp_path).env()


def test_the_example_leaves_every_llm_choice_empty_and_each_one_chooses_an_llm() -> None:
    values = dict(
        line.split("=", 1) for line in EXAMPLE.read_text(encoding="utf-8").splitlines() if "=" in line
    )
    for name in LLM_CHOICE:
        assert values[name] == "", f"{name} set in deploy/.env.example: the first run would not be offline"
        assert not wanted({name: "http://127.0.0.1:9/v1"}), name


def test_setting_an_llm_in_the_example_uses_it(project_env: Path) -> None:
    set_line(project_env, "OPENAI_BASE_URL", "http://127.0.0.1:8001/v1")
    settings = bootstrap.settings(project_env, offline_llm=True)
    assert not bootstrap.uses_offline_llm(settings)
    assert settings.llm_backend == "openai" and settings.openai_base_url == "http://127.0.0.1:8001/v1"


def test_api_openai_com_without_a_key_says_what_is_missing_and_how_to_go_offline(project_env: Path) -> None:
    """The fault an operator met: OPENAI_BASE_URL is set, and the message told them to set it."""
    set_line(project_env, "OPENAI_BASE_URL", DEFAULT_OPENAI_BASE_URL)
    with pytest.raises(ConfigError) as raised:
        bootstrap.settings(project_env, offline_llm=True)
    message = str(raised.value)
    assert "OPENAI_API_KEY: missing" in message
    assert f"OPENAI_BASE_URL is set to {DEFAULT_OPENAI_BASE_URL}" in message
    assert "or set OPENAI_BASE_URL" not in message
    assert "leave OPENAI_API_KEY, OPENAI_BASE_URL and FASTCHAT_CONTROLLER_URL empty" in message


def test_the_fastchat_backend_chosen_without_a_controller_names_it_not_the_local_model(
    project_env: Path,
) -> None:
    """LLM_BACKEND=fastchat is the operator's choice: the missing controller is said, no model starts."""
    set_line(project_env, "LLM_BACKEND", "fastchat")
    assert not wanted(bootstrap.environment(project_env))
    with pytest.raises(ConfigError, match="FASTCHAT_CONTROLLER_URL: required with LLM_BACKEND=fastchat"):
        bootstrap.settings(project_env, offline_llm=True)


def test_a_controller_without_the_fastchat_backend_says_to_set_it(project_env: Path) -> None:
    """The example's LLM_BACKEND=openai left as it is: the message named OPENAI_API_KEY, the wrong cause."""
    set_line(project_env, "FASTCHAT_CONTROLLER_URL", "http://127.0.0.1:21001")
    with pytest.raises(ConfigError) as raised:
        bootstrap.settings(project_env, offline_llm=True)
    message = str(raised.value)
    assert "FASTCHAT_CONTROLLER_URL is set but LLM_BACKEND is openai: set LLM_BACKEND=fastchat" in message
    assert "OPENAI_API_KEY" not in message
    set_line(project_env, "LLM_BACKEND", "fastchat")
    assert bootstrap.settings(project_env, offline_llm=True).llm_backend == "fastchat"
