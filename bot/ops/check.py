"""`make check`: validate every setting and try every dependency for real; say what to fix.

Exit code 0 when everything needed works, 1 otherwise. Each failure names the setting and the fix.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import redis
import requests

from bot.config import PROJECT_ENV_FILE, ConfigError, Settings
from bot.llm import LLMError, make_backend
from bot.ops import bootstrap
from bot.ops.redis_server import embedded_url

#: WeChat error codes that a token fetch can answer, and what they mean for the operator
TOKEN_ERRORS = {
    40013: "WECHAT_APPID is not a valid AppID: copy it from 公众号后台 → 设置与开发 → 基本配置",
    40125: "WECHAT_SECRET is wrong: reset/copy the AppSecret in 公众号后台 → 基本配置 (开发者密码)",
    40001: "WECHAT_SECRET is wrong or was reset: copy the current AppSecret",
    40164: "this server's IP {ip} is not in the IP whitelist: 公众号后台 → 基本配置 → IP白名单, add {ip}",
    89503: "this server's IP {ip} needs the admin's confirmation: add it to the IP whitelist",
}


@dataclass
class Report:
    out: TextIO
    failed: bool = False
    lines: list[str] = field(default_factory=list)

    def ok(self, what: str, detail: str) -> None:
        self._say("ok", what, detail)

    def warn(self, what: str, detail: str) -> None:
        self._say("warn", what, detail)

    def fail(self, what: str, detail: str) -> None:
        self.failed = True
        self._say("FAIL", what, detail)

    def _say(self, level: str, what: str, detail: str) -> None:
        line = f"[{level:>4}] {what}: {detail}"
        self.lines.append(line)
        print(line, file=self.out, flush=True)


def check_redis(settings: Settings, report: Report) -> None:
    url, embedded = settings.redis_url, False
    if not url:
        report.warn("REDIS_URL", "unset: `make run` starts an embedded Redis; set it for production")
        try:  # the embedded Redis of a running `make run`, found the way `make admin-code` finds it
            url, embedded = embedded_url(Path(settings.data_dir)) or "", True
        except OSError as exc:
            report.fail("embedded Redis", f"cannot read its URL ({exc}): run this as the user of `make run`")
            return
        if not url:
            return
    problem = bootstrap.redis_problem(url, embedded, Path(settings.data_dir))
    if problem is not None:  # a `make run` killed outright leaves its note behind: only a warning
        (report.warn if embedded else report.fail)(*problem)
        return
    check_persistence(url, "embedded Redis" if embedded else "Redis", report)


def check_persistence(url: str, what: str, report: Report) -> None:
    """AOF or RDB on, read with CONFIG GET (which a managed Redis may disable)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        appendonly = client.config_get("appendonly").get("appendonly", "no")
        save = client.config_get("save").get("save", "")
    except redis.exceptions.ResponseError:
        report.ok(what, f"answers at {bootstrap.shown_url(url)} (persistence not readable: CONFIG disabled)")
        return
    except redis.exceptions.RedisError as exc:  # it answered PING a moment ago
        report.fail(what, f"answered PING, then: {exc}")
        return
    finally:
        client.close()
    if appendonly == "yes" or save:
        report.ok(what, f"answers; persistence appendonly={appendonly} save={save!r}")
    else:
        report.warn("Redis", "persistence is off: pending answers are lost on restart (set appendonly yes)")


def check_pushes(settings: Settings, report: Report) -> None:
    """What the webhook accepts: the settings that weaken it are said out loud."""
    if settings.wechat_accept_plaintext and settings.encrypted:
        report.warn(
            "WECHAT_ACCEPT_PLAINTEXT",
            "on: plaintext (明文) pushes are accepted although WECHAT_AES_KEY is set, and anyone who sees "
            "one signed URL can forge messages with it; set it to false once 公众号后台 is in 兼容/安全模式",
        )
    elif settings.wechat_accept_plaintext:
        report.warn("WECHAT_ACCEPT_PLAINTEXT", "on, but it does nothing without WECHAT_AES_KEY (明文模式)")
    tolerance = settings.wechat_timestamp_tolerance
    default = Settings.model_fields["wechat_timestamp_tolerance"].default
    if tolerance > default:
        report.warn(
            "WECHAT_TIMESTAMP_TOLERANCE",
            f"{tolerance}s: a signed URL is accepted this long after WeChat made it (if Redis lost its "
            f"record, with another body); {default}s is enough for WeChat's retries",
        )


def check_wechat(settings: Settings, report: Report) -> None:
    if not (settings.wechat_appid and settings.wechat_secret):
        needed = settings.wechat_reply_mode == "active"
        say = report.fail if needed else report.warn
        say("WECHAT_APPID/WECHAT_SECRET", "unset: customer-service sends and voice transcription cannot work")
        return
    body = {
        "grant_type": "client_credential",
        "appid": settings.wechat_appid,
        "secret": settings.wechat_secret,
        "force_refresh": False,
    }
    url = settings.wechat_api_base + "/cgi-bin/stable_token"
    try:
        result = requests.post(url, json=body, timeout=settings.wechat_http_timeout).json()
    except (requests.RequestException, ValueError) as exc:
        report.fail("WECHAT_API_BASE", f"cannot reach {settings.wechat_api_base}: {exc}")
        return
    code = int(result.get("errcode", 0) or 0)
    if code == 0 and result.get("access_token"):
        report.ok("WeChat API", f"access_token fetched for {settings.wechat_appid}")
        return
    message = str(result.get("errmsg", ""))
    found = re.search(r"invalid ip ([0-9a-fA-F.:]+)", message)
    hint = TOKEN_ERRORS.get(code, "see the errmsg").format(ip=found.group(1) if found else "(see errmsg)")
    report.fail("WeChat API", f"errcode {code} ({message}): {hint}")


def check_llm(settings: Settings, report: Report) -> None:
    if bootstrap.uses_offline_llm(settings):
        report.warn(
            "LLM",
            "none configured (OPENAI_API_KEY, OPENAI_BASE_URL and FASTCHAT_CONTROLLER_URL are empty): "
            "`make run` answers with a small local model, for trying the bot; configure one for your users",
        )
        return
    what = (
        "FASTCHAT_CONTROLLER_URL" if settings.llm_backend == "fastchat" else "OPENAI_BASE_URL/OPENAI_API_KEY"
    )
    model = settings.fastchat_model if settings.llm_backend == "fastchat" else settings.openai_model
    with closing(make_backend(settings)) as backend:
        listing: LLMError | None = None
        try:
            models = backend.models()
        except LLMError as exc:
            models, listing = [], exc
            report.warn(what, f"cannot list models ({exc.detail}); trying a completion anyway")
        if models and model not in models:
            report.warn(what, f"model {model!r} is not among {models[:8]}")
        if models:
            check_experts(settings, models, report)
        try:
            with closing(backend.stream([{"role": "user", "content": "Say OK."}])) as pieces:
                first = next(pieces, "")  # a reasoning model's thinking counts: it answered
                first = first if isinstance(first, str) else first.text
        except LLMError as exc:
            report.fail(what, f"a test completion with {model!r} failed: {llm_hint(exc, listing)}")
            return
    report.ok("LLM", f"{settings.llm_backend} answered with {model!r} ({first[:20]!r}…)")


def check_experts(settings: Settings, models: list[str], report: Report) -> None:
    """An expert the backend does not serve is not asked (bot/experts/): the default model answers."""
    missing = [f"{task}:{model}" for task, model in settings.experts.items() if model not in models]
    if missing:
        report.warn("EXPERTS", f"not served, their questions go to the default model: {', '.join(missing)}")


def llm_hint(exc: LLMError, listing: LLMError | None = None) -> str:
    """What to check, by the completion's status and kind: never by its text, which holds the URL (a port
    such as 14010 read as a 401). `listing`: how listing the models failed, if it did."""
    detail = exc.detail
    if exc.status == 401:
        return f"{detail} → check OPENAI_API_KEY"
    if exc.status == 404 and listing is not None and listing.status == 404:
        return f"{detail} → /models is not found either: does OPENAI_BASE_URL end in /v1?"
    if exc.status == 404:
        return f"{detail} → check OPENAI_MODEL / FASTCHAT_MODEL"
    if exc.kind in ("unavailable", "timeout"):
        return f"{detail} → is the server at OPENAI_BASE_URL / FASTCHAT_CONTROLLER_URL running and reachable?"
    return detail


def mask(secret: str) -> str:
    """Enough of a secret to recognise it, not to use it: a terminal's output is often shared."""
    if len(secret) <= 6:
        return "*" * len(secret)
    return secret[:2] + "*" * (len(secret) - 4) + secret[-2:]


def full_values(settings: Settings) -> str:
    """Where the operator finds what `mask` hides."""
    names = ["WECHAT_TOKEN"] + (["WECHAT_AES_KEY"] if settings.wechat_aes_key else [])
    return ", ".join(where(name) for name in names)


def where(name: str) -> str:
    """The environment wins over the project's .env (bot.config reads both)."""
    if os.environ.get(name, "").strip():
        return f"the environment variable {name}"
    return f"{name} in {PROJECT_ENV_FILE}"


def paste_instructions(settings: Settings, report: Report) -> None:
    mode = "安全模式 (or 兼容模式)" if settings.encrypted else "明文模式"
    aes_key = mask(settings.wechat_aes_key) or "(any; only used in 兼容/安全 mode — set WECHAT_AES_KEY)"
    print(
        "\n公众号后台 → 设置与开发 → 基本配置 → 服务器配置:\n"
        f"  URL:            {bootstrap.webhook_url(settings)}   (nginx → http://{settings.host}:{settings.port}/wechat)\n"
        f"  Token:          {mask(settings.wechat_token)}\n"
        f"  EncodingAESKey: {aes_key}\n"
        f"  (masked; the full values: {full_values(settings)})\n"
        f"  消息加解密方式:  {mode}\n"
        f"  replies:        {settings.wechat_reply_mode}"
        + (" (needs a verified account: 48001 otherwise)" if settings.wechat_reply_mode == "active" else ""),
        file=report.out,
    )


CHECKS: list[Callable[[Settings, Report], None]] = [check_redis, check_pushes, check_wechat, check_llm]


def run_checks(out: TextIO = sys.stdout, **overrides: Any) -> int:
    """Every check, in order; `overrides` replace settings (the tests pass them all)."""
    report = Report(out)
    try:
        settings = bootstrap.settings(offline_llm=True, **overrides)
    except ConfigError as exc:
        report.fail("settings", str(exc))
        return 1
    report.ok("settings", "every setting is valid")
    for check in CHECKS:
        check(settings, report)
    paste_instructions(settings, report)
    print("\nall checks passed" if not report.failed else "\nsome checks FAILED: fix them above", file=out)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(run_checks())
