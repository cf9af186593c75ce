"""The run-time settings as the console's settings page shows and changes them: what each one is now,
what the environment says, and the checks a new value passes before it is written to the overrides
(bot/store/overrides.py; every process uses it from its next answer on).

Errors are codes; the page says them in Chinese (templates/console/settings.html).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from werkzeug.datastructures import MultiDict

from bot.runtime import Runtime

Kind = Literal["text", "count", "words", "models"]
#: every setting the page changes, in its order, and how it is edited
FIELDS: dict[str, Kind] = {
    "system_prompt": "text",
    "welcome_text": "text",
    "daily_quota": "count",
    "rate_per_minute": "count",
    "sensitive_words": "words",
    "allowed_models": "models",
}
#: a system prompt longer than this would crowd the history out of the prompt (characters)
PROMPT_MAX = 4000
#: a count of at most 9 digits (as /quota takes it)
COUNT_DIGITS = 9
#: sensitive words: how many, and how long each may be
WORDS_MAX = 5000
WORD_MAX = 50
#: the largest body of a setting's form: the longest word list above, each character of it 9 bytes as a
#: form sends it (%E4%B8%AD), each line break 6 (%0D%0A), and room for the rest of the form. The webhook's
#: limit (WECHAT_MAX_BODY_BYTES, 64 KiB) refused a list of 1,500 Chinese words with a 413.
FORM_MAX_BYTES = WORDS_MAX * (WORD_MAX * 9 + 6) + 64 * 1024


@dataclass(frozen=True)
class Field:
    """One setting as the page shows it."""

    name: str
    kind: Kind
    value: str
    environment: str
    overridden: bool
    #: the models a follower may be allowed (allowed_models), and the ones allowed now
    choices: tuple[str, ...] = ()
    picked: tuple[str, ...] = ()


def current(runtime: Runtime) -> list[Field]:
    """Every setting: its value in force and the environment's."""
    overrides, settings = runtime.overrides, runtime.settings
    set_here = overrides.overridden()
    words = overrides.sensitive_words()
    configured_words = "\n".join(runtime.moderator.configured.words)
    models = runtime.models
    values = {
        "system_prompt": (overrides.system_prompt(), settings.system_prompt),
        "welcome_text": (overrides.welcome_text() or "", settings.welcome_text),
        "daily_quota": (str(overrides.daily_quota()), str(settings.user_daily_quota)),
        "rate_per_minute": (str(overrides.rate_per_minute()), str(settings.user_rate_per_minute)),
        "sensitive_words": ("\n".join(words) if words is not None else configured_words, configured_words),
        "allowed_models": (", ".join(models.allowed), ", ".join(models.configured)),
    }
    return [
        Field(
            name,
            kind,
            values[name][0],
            values[name][1],
            name in set_here,
            tuple(models.configured) if kind == "models" else (),
            tuple(models.allowed) if kind == "models" else (),
        )
        for name, kind in FIELDS.items()
    ]


def as_submitted(fields: list[Field], name: str, form: MultiDict[str, str]) -> list[Field]:
    """The page after `name` was refused: that field shows what the operator typed (or ticked), so that
    they correct it rather than type it again; the others show their values in force."""
    return [_submitted(field, form) if field.name == name else field for field in fields]


def _submitted(field: Field, form: MultiDict[str, str]) -> Field:
    if field.kind == "models":
        chosen = form.getlist("model")
        return replace(field, picked=tuple(m for i, m in enumerate(field.choices) if i == 0 or m in chosen))
    if "value" not in form:  # an incomplete form: nothing typed to keep
        return field
    return replace(field, value=form.get("value", "").replace("\r\n", "\n"))


def apply(runtime: Runtime, name: str, form: MultiDict[str, str]) -> tuple[str, str]:
    """Check and write one setting from its form: ("", what the audit log says) or (error code, "")."""
    kind = FIELDS[name]
    overrides = runtime.overrides
    # a body that is not UTF-8 parses as an empty form: never "no value", which would empty the system
    # prompt or the words, or take every model but the default away (the page's forms always carry
    # their CSRF field, and "value" but for the models' check boxes)
    if not form or (kind != "models" and "value" not in form):
        return "missing", ""
    if kind == "text":
        value = form.get("value", "").replace("\r\n", "\n").strip()
        limit = PROMPT_MAX if name == "system_prompt" else runtime.settings.wechat_max_reply_bytes
        size = len(value) if name == "system_prompt" else len(value.encode("utf-8"))
        if size > limit:
            return "too_long", ""
        overrides.set(name, value)
        return "", value[:120]
    if kind == "count":
        raw = form.get("value", "").strip()
        if not (raw.isdecimal() and raw.isascii() and len(raw) <= COUNT_DIGITS):
            return "not_a_count", ""
        overrides.set(name, str(int(raw)))
        return "", str(int(raw))
    if kind == "words":
        words = list(
            dict.fromkeys(line.strip() for line in form.get("value", "").splitlines() if line.strip())
        )
        if len(words) > WORDS_MAX or any(len(word) > WORD_MAX for word in words):
            return "too_many_words", ""
        overrides.set_list(name, words)
        return "", f"{len(words)} words"
    chosen = form.getlist("model")
    configured = runtime.models.configured
    if any(model not in configured for model in chosen):
        return "unknown_model", ""
    picked = [model for model in configured if model in chosen or model == configured[0]]
    overrides.set_list(name, picked)
    return "", ", ".join(picked)
