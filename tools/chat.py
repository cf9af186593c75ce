"""`make chat`: talk to the running bot from a terminal, the way a follower does through WeChat.

Each line typed (or piped in) becomes a real push to the bot's /wechat URL: signed, encrypted in
safe mode when WECHAT_AES_KEY is set, with WeChat's timing (5 s per attempt, 3 attempts, the same
MsgId) — `testing/simulator.py` does that part. What comes back is shown as the user would see it:
the passive reply, nothing for an acknowledgement, or WeChat's failure notice.

Active mode (WECHAT_REPLY_MODE=active) answers through the customer-service API instead. When
WECHAT_API_BASE points at loopback (e.g. http://127.0.0.1:8001), this tool serves a tiny stand-in
of WeChat's API there (token, custom/send, typing) and prints each customer-service message as it
arrives. The bot must be started with the same WECHAT_API_BASE; otherwise only passive replies show.

Commands of this tool: `/user NAME` (chat as another follower), `/quit`. Everything else, `继续`,
`/help` and `/reset` included, goes to the bot. Settings come from the environment and `.env`
(WECHAT_TOKEN, WECHAT_APPID, WECHAT_AES_KEY, HOST, PORT, WECHAT_API_BASE...); no LLM key is needed.
When they name no LLM, the banner says that the bot answers with `make run`'s first-run model.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from bot.ops.local_llm import LOCAL_MAX_TOKENS, MODEL_TITLE, wanted
from testing.simulator import Delivery, MsgIdGenerator, WeChatSimulator

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_USER = "alice"
#: what WeChat shows when no attempt got a valid answer
FAILURE_NOTICE = "该公众号提供的服务出现故障，请稍后再试"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: in active mode, wait after the last input until no customer-service message came for this long
DEFAULT_ACTIVE_LINGER = 5.0
#: ...but while a follower is shown typing, wait up to this long for the answer
MAX_LINGER = 60.0


@dataclass(frozen=True)
class ChatSettings:
    url: str
    token: str
    appid: str
    aes_key: str
    attempt_timeout: float
    attempts: int
    api_base: str
    reply_mode: str

    @property
    def mode(self) -> str:
        return "safe" if self.aes_key else "plain"

    @property
    def fake_api_port(self) -> int | None:
        """The port to serve WeChat's API on: only when WECHAT_API_BASE is a loopback URL."""
        split = urlsplit(self.api_base)
        if split.scheme == "http" and split.hostname in LOOPBACK and split.port:
            return split.port
        return None


def read_env(env_file: Path) -> dict[str, str]:
    """`.env` overlaid by the environment (the bot's own precedence), upper-cased names."""
    values = {key.upper(): value or "" for key, value in dotenv_values(env_file).items()}
    values.update({key.upper(): value for key, value in os.environ.items()})
    return values


def settings_from(env: Mapping[str, str], url: str | None = None) -> ChatSettings:
    """Only what the WeChat side needs; SystemExit naming the variable when it is missing."""
    token = env.get("WECHAT_TOKEN", "")
    if not token:
        raise SystemExit("WECHAT_TOKEN: required (the same Token as the bot's, in .env or the environment)")
    aes_key = env.get("WECHAT_AES_KEY", "")
    if aes_key and not env.get("WECHAT_APPID"):
        raise SystemExit("WECHAT_APPID: required with WECHAT_AES_KEY")
    host = env.get("HOST", "") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return ChatSettings(
        url=url or f"http://{host}:{env.get('PORT') or '8000'}/wechat",
        token=token,
        appid=env.get("WECHAT_APPID", ""),
        aes_key=aes_key,
        attempt_timeout=float(env.get("WECHAT_ATTEMPT_TIMEOUT") or 5.0),
        attempts=int(env.get("WECHAT_ATTEMPTS") or 3),
        api_base=env.get("WECHAT_API_BASE", ""),
        reply_mode=env.get("WECHAT_REPLY_MODE", "passive") or "passive",
    )


def llm_note(env: Mapping[str, str]) -> str | None:
    """What the banner says about the LLM: only when the settings name none, as on the first run."""
    if not wanted(env):
        return None
    cap = env.get("LLM_MAX_TOKENS") or LOCAL_MAX_TOKENS  # the cluster's default, as bot.ops.local_llm sets it
    lines = [
        f"no LLM configured: `make run` answers with its first-run model, {MODEL_TITLE} on the CPU:",
        f"a small model, answers capped at {cap} tokens, for seeing the pipeline work.",
        "For your followers set OPENAI_API_KEY (with OPENAI_BASE_URL for another OpenAI-compatible",
        "server) or LLM_BACKEND=fastchat, FASTCHAT_CONTROLLER_URL and FASTCHAT_MODEL in .env, and",
        "restart `make run`",
    ]
    return "\n   ".join(lines)


class Screen:
    """Prints whole messages one at a time (pushes and customer-service messages come from threads)."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.lock = threading.Lock()
        self.last_activity = time.monotonic()
        #: followers shown the typing indicator whose answer has not arrived yet
        self.waiting: set[str] = set()

    def show(self, who: str, text: str) -> None:
        lines = text.splitlines() or [""]
        pad = " " * (len(who) + 2)
        body = "\n".join([f"{who}> {lines[0]}", *(pad + line for line in lines[1:])])
        with self.lock:
            self.last_activity = time.monotonic()
            print(body, file=self.out, flush=True)

    def note(self, text: str) -> None:
        with self.lock:
            print(f"  ({text})", file=self.out, flush=True)


# ---- WeChat's API, as far as active mode needs it --------------------------------------------------
class FakeAPIHandler(BaseHTTPRequestHandler):
    """access_token, custom/send (shown on the screen), typing; anything else: an errcode."""

    server: FakeAPIServer

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        result = self.server.route(urlsplit(self.path).path, body)
        data = json.dumps(result, ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the screen is for the conversation."""


class FakeAPIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, screen: Screen, current_user: Callable[[], str]) -> None:
        super().__init__(("127.0.0.1", port), FakeAPIHandler)
        self.screen = screen
        self.current_user = current_user

    def route(self, path: str, body: bytes) -> dict[str, Any]:
        if path in ("/cgi-bin/token", "/cgi-bin/stable_token"):
            return {"access_token": "make-chat-token", "expires_in": 7200}
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return {"errcode": 47001, "errmsg": "data format error"}
        if path == "/cgi-bin/message/custom/send":
            self.screen.waiting.discard(str(data.get("touser")))
            self.screen.show(self._speaker(data, "客服"), describe_custom(data))
            return {"errcode": 0, "errmsg": "ok"}
        if path == "/cgi-bin/message/custom/typing":
            if data.get("command") == "Typing":
                self.screen.waiting.add(str(data.get("touser")))
                self.screen.note(f"{data.get('touser')} sees: 对方正在输入…")
            return {"errcode": 0, "errmsg": "ok"}
        return {"errcode": 40007, "errmsg": f"{path} is not simulated by tools/chat.py"}

    def _speaker(self, data: dict[str, Any], kind: str) -> str:
        touser = str(data.get("touser", ""))
        return f"bot[{kind}]" if touser == self.current_user() else f"bot[{kind} → {touser}]"


def describe_custom(data: dict[str, Any]) -> str:
    kind = str(data.get("msgtype", ""))
    if kind == "text":
        return str((data.get("text") or {}).get("content", ""))
    return f"[{kind} {json.dumps(data.get(kind), ensure_ascii=False)}]"


def describe_reply(delivery: Delivery) -> str | None:
    """What the user's WeChat shows for a push's answer; None when it shows nothing."""
    if delivery.user_sees_failure:
        reason = failure_reason(delivery)
        return f"{FAILURE_NOTICE}   ← WeChat's notice: no attempt got a valid answer ({reason})"
    reply = delivery.reply
    if reply is None:
        return None
    kind = str(reply.get("MsgType", ""))
    if kind == "text":
        return str(reply.get("Content", ""))
    media = reply.get(kind.capitalize())
    if isinstance(media, dict):
        return f"[{kind} media_id={media.get('MediaId', '')}]"
    return f"[{kind} reply]"


def failure_reason(delivery: Delivery) -> str:
    """Why WeChat's last attempt did not count: the bot's status and what it said (403: bad signature),
    a timeout, or a reply WeChat would not show."""
    last = delivery.attempts[-1]
    if isinstance(last.status, int) and last.status != 200:
        said = " ".join(last.body.decode(errors="replace").split())[:200]
        return f"HTTP {last.status}: {said}" if said else f"HTTP {last.status}"
    return last.problem or "no valid answer"


def unreachable(delivery: Delivery) -> str | None:
    """The connection error, when no attempt reached the bot at all (nothing listens at the URL)."""
    if delivery.attempts and all(attempt.status == "error" for attempt in delivery.attempts):
        return (delivery.attempts[-1].problem or "").removeprefix("connection error: ")
    return None


def timing_note(delivery: Delivery) -> str | None:
    """Say so when WeChat had to retry: that is the 5-second logic at work."""
    count = len(delivery.attempts)
    if count <= 1:
        return None
    if delivery.user_sees_failure:
        return f"WeChat tried {count} times, for {delivery.elapsed:.1f} s"
    return f"answered on WeChat's attempt {count}, after {delivery.elapsed:.1f} s"


# ---- the conversation -------------------------------------------------------------------------------
class Chat:
    def __init__(self, settings: ChatSettings, screen: Screen, user: str = DEFAULT_USER) -> None:
        self.settings = settings
        self.screen = screen
        self.user = user
        # MsgIds must be unique across runs of this tool, as WeChat's are: the bot de-duplicates
        # on them for days, so ids restarting at the same number would fetch old replies
        self.msg_ids = MsgIdGenerator(start=time.time_ns() // 100)
        self.simulator = WeChatSimulator(
            settings.url,
            settings.token,
            settings.appid,
            aes_key=settings.aes_key or None,
            mode=settings.mode,
            attempt_timeout=settings.attempt_timeout,
            attempts=settings.attempts,
        )

    def handle(self, line: str) -> bool:
        """One input line; False when the user quits."""
        text = line.strip()
        if not text:
            return True
        if text == "/quit":
            return False
        if text.startswith("/user"):
            self._switch_user(text.removeprefix("/user").strip())
            return True
        self.send(text)
        return True

    def _switch_user(self, name: str) -> None:
        if not name or " " in name:
            self.screen.note("usage: /user NAME")
            return
        self.user = name
        self.screen.note(f"now chatting as {name}")

    def send(self, text: str) -> None:
        xml = self.simulator.text_xml(self.user, text, msg_id=self.msg_ids())
        delivery = self.simulator.push(xml)  # a connection error is an attempt's problem, not raised
        refused = unreachable(delivery)
        if refused is not None:
            self.screen.note(
                f"cannot reach {self.settings.url} ({refused}): is `make run` running (HOST/PORT)?"
            )
            return
        shown = describe_reply(delivery)
        if shown is not None:
            self.screen.show("bot", shown)
        elif self.settings.reply_mode != "active":
            self.screen.note("no passive reply")
        note = timing_note(delivery)
        if note:
            self.screen.note(note)


def input_lines(prompt: Callable[[], str]) -> Iterator[str]:
    """Lines from stdin: with a prompt and line editing on a terminal, echoed when piped."""
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    while True:
        try:
            line = input(prompt()) if interactive else sys.stdin.readline()
        except EOFError:
            return
        if not interactive:
            if not line:
                return
            print(f"{prompt()}{line.rstrip()}", flush=True)
        yield line


def start_fake_api(settings: ChatSettings, screen: Screen, chat: Chat) -> FakeAPIServer | None:
    port = settings.fake_api_port
    if port is None:
        if settings.reply_mode == "active":
            screen.note("active mode, but WECHAT_API_BASE is not a loopback URL: customer-service messages")
            screen.note("go to the real WeChat API and are not shown here")
        return None
    try:
        server = FakeAPIServer(port, screen, lambda: chat.user)
    except OSError as exc:
        screen.note(f"cannot serve WeChat's API on 127.0.0.1:{port} ({exc}): passive replies only")
        return None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def linger(screen: Screen, quiet: float, patience: float = MAX_LINGER) -> None:
    """After the last input, give customer-service messages time to arrive: until `quiet` seconds
    pass without one and nobody is shown typing, or `patience` seconds pass without any."""
    while True:
        idle = time.monotonic() - screen.last_activity
        if idle >= patience or (idle >= quiet and not screen.waiting):
            return
        time.sleep(0.1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make chat", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the bot's push URL (default: http://HOST:PORT/wechat)")
    parser.add_argument(
        "--user", default=DEFAULT_USER, help=f"the follower's openid (default {DEFAULT_USER})"
    )
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    parser.add_argument(
        "--linger",
        type=float,
        default=None,
        help=f"active mode: seconds of quiet to wait for at the end (default {DEFAULT_ACTIVE_LINGER})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = read_env(args.env_file)
    settings = settings_from(env, args.url)
    screen = Screen()
    chat = Chat(settings, screen, args.user)
    server = start_fake_api(settings, screen, chat)
    where = f", WeChat API on {settings.api_base}" if server else ""
    screen.note(f"pushing to {settings.url} ({settings.mode} mode{where}); /user NAME, /quit")
    note = llm_note(env)
    if note:
        screen.note(note)
    try:
        for line in input_lines(lambda: f"{chat.user}> "):
            if not chat.handle(line):
                break
        if server is not None:
            linger(screen, DEFAULT_ACTIVE_LINGER if args.linger is None else args.linger)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
