"""Chat commands: one decorated function each; `admin_only` is enforced here, in `run` only.

Commands start with `/` (or the full-width `／`), never reach the LLM and are answered at once.
An unknown command and an admin command sent by a non-admin get the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot import texts
from handlers.context import Context

CommandFn = Callable[[Context, str], str]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    admin_only: bool
    fn: CommandFn


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, *, admin_only: bool = False) -> Callable[[CommandFn], CommandFn]:
    def register(fn: CommandFn) -> CommandFn:
        COMMANDS[name] = Command(name, help, admin_only, fn)
        return fn

    return register


def is_command(text: str) -> bool:
    return text.startswith(("/", "／"))


def run(text: str, ctx: Context) -> str:
    name, _, args = text[1:].strip().partition(" ")
    found = COMMANDS.get(name.lower())
    if found is None or (found.admin_only and not ctx.is_admin):
        return texts.UNKNOWN_COMMAND
    return found.fn(ctx, args.strip())


@command("help", "查看可用命令 (help)")
def help_command(ctx: Context, args: str) -> str:
    visible = [cmd for cmd in COMMANDS.values() if ctx.is_admin or not cmd.admin_only]
    lines = [texts.HELP_HEADER] + [f"/{cmd.name} — {cmd.help}" for cmd in visible]
    return "\n".join([*lines, "", texts.HELP_FOOTER])


@command("reset", "清空对话记录 (reset)")
def reset_command(ctx: Context, args: str) -> str:
    ctx.services.history.clear(ctx.openid)
    return texts.RESET_DONE
