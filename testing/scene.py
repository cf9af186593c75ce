"""Scene: the 5-second logic played as a script, in fake time, in milliseconds, the same way every run.

The bot's own code decides everything — the webhook (signature, de-duplication, the plan of the
first delivery), the chat router, PassiveDelivery, the answer store and push log on the real Redis,
and AnswerJob streaming from the LLM — but time is a testing.clock.FakeClock, the waiter a
testing.waiter.FakeWaiter (woken by the bot's real Redis notices), the LLM a
testing.chat_backend.ScriptedBackend, and the job queue runs each job in-process as a task of the
clock. WeChat's side is played here with WeChat's real timing: attempt 1 when the message is sent,
each further attempt when the previous one has had `wechat_attempt_timeout` (5 s) without a valid
answer, 3 attempts in all; a reply counts only if it reaches WeChat in time. With
WECHAT_REPLY_MODE=active, WeChat's customer-service API is `scene.cs` (CustomerService), which
records the messages it accepted and refuses the ones it is told to.

    scene.backend.answer("hello", "echo: hello", after=4.3)
    push = scene.say("user-1", "hello")          # question at t=0
    assert push.answered_on == 1 and push.replied_at == 4.3

Times are fake seconds since the scene started. `say` runs the world until WeChat is done with
the push; `send` only schedules one (for pushes that overlap); `advance_to` lets time pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, cast

import redis

from bot.answering.generation import AnswerJob
from bot.answering.jobs import Jobs
from bot.config import Settings, load_settings
from bot.delivery.passive import PassiveDelivery
from bot.delivery.waiter import ReadyWaiter
from bot.runtime import Runtime
from bot.webhook import Inbound, Webhook
from bot.wechat.api import WeChatAPIError
from bot.wechat.protocol import WeChatProtocol
from handlers.router import Router
from testing.chat_backend import ScriptedBackend
from testing.clock import FakeClock, Task
from testing.simulator import Attempt, Delivery, WeChatSimulator, parse_xml
from testing.waiter import FakeWaiter, ReadyBus

TOKEN = "scene-token"
APPID = "wx0123456789abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
#: WeChat's timing, taken from the settings' own defaults (nothing shortened)
WECHAT_TIMING = ("wechat_attempt_timeout", "wechat_reply_margin", "wechat_attempts")

Verdict = Literal["open", "reply", "ack", "timeout", "refused"]


def scene_settings(redis_url: str, mode: str = "plain", **overrides: Any) -> Settings:
    """Settings for a scene: WeChat's real timing (the defaults, stated explicitly so that no
    environment variable shortens them) and no per-minute limit (it counts real minutes)."""
    values: dict[str, Any] = {name: Settings.model_fields[name].default for name in WECHAT_TIMING}
    values |= {
        "wechat_token": TOKEN,
        "wechat_appid": APPID,
        "wechat_aes_key": AES_KEY if mode != "plain" else "",
        "redis_url": redis_url,
        "llm_backend": "openai",
        "openai_api_key": "unused: the scene's backend is in-process",
        "user_rate_per_minute": 0,
    }
    return load_settings(**(values | overrides))


@dataclass
class AttemptLog:
    """One delivery of a push, in fake time."""

    number: int
    process: int
    arrived: float
    deadline: float
    answered: float | None = None  # the bot's response was complete
    reached: float | None = None  # ... and reached WeChat (after the response delay)
    status: int | None = None
    body: str = ""
    verdict: Verdict = "open"
    problem: str | None = None

    @property
    def late(self) -> bool:
        """The bot answered, but after WeChat had hung up (it never read the answer)."""
        return self.reached is not None and self.reached > self.deadline


@dataclass
class Push:
    """A message sent by a user, and everything WeChat saw of it."""

    openid: str
    content: str
    sent: float
    delivery: Delivery
    attempts: list[AttemptLog] = field(default_factory=list)
    done: bool = False
    task: Task | None = None
    waiting_on: AttemptLog | None = None

    @property
    def text(self) -> str | None:
        """The text the user reads (None: no text reply)."""
        return self.delivery.text

    @property
    def accepted(self) -> AttemptLog | None:
        """The attempt whose answer WeChat took (a reply or an acknowledgement)."""
        return next((a for a in self.attempts if a.verdict in ("reply", "ack")), None)

    @property
    def answered_on(self) -> int | None:
        """The attempt that carried the reply the user reads."""
        accepted = self.accepted
        return accepted.number if accepted is not None and accepted.verdict == "reply" else None

    @property
    def replied_at(self) -> float | None:
        """When that reply reached WeChat (fake seconds since the scene started)."""
        accepted = self.accepted
        return accepted.reached if accepted is not None and accepted.verdict == "reply" else None

    @property
    def user_sees_failure(self) -> bool:
        return self.delivery.user_sees_failure


@dataclass
class Sent:
    """A customer-service message WeChat accepted."""

    openid: str
    text: str
    at: float


class CustomerService:
    """Stands in for the WeChat API of the active sender (WECHAT_REPLY_MODE=active): customer-service
    sends, which take no fake time, and the typing indicator. Records what WeChat accepted; refuses
    the sends it was told to refuse (`refuse`), numbered per user from 1 as WeChat received them."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[Sent] = []
        self.received: dict[str, int] = {}
        self._refusals: dict[tuple[str, int], WeChatAPIError] = {}

    def refuse(self, openid: str, *numbers: int, errcode: int | None = 45047) -> None:
        """Refuse the sends `numbers` to `openid` with `errcode` (None: the call fails on the network)."""
        errmsg = "response out of limit" if errcode else "connection reset"
        for number in numbers:
            self._refusals[(openid, number)] = WeChatAPIError(errcode, errmsg)

    def texts(self, openid: str) -> list[str]:
        return [sent.text for sent in self.sent if sent.openid == openid]

    def send_text(self, openid: str, content: str) -> None:
        number = self.received[openid] = self.received.get(openid, 0) + 1
        if (refusal := self._refusals.get((openid, number))) is not None:
            raise refusal
        self.sent.append(Sent(openid, content, self.clock.now))

    def send_image(self, openid: str, media_id: str) -> None:
        self.send_text(openid, f"[image {media_id}]")

    def typing(self, openid: str, typing: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


class SceneJobs:
    """Stands in for bot.answering.jobs.Jobs for questions (meeting minutes and broadcasts are not part
    of a delivery scene): what the router queues runs in-process, as a task of the clock — at once (an
    idle worker) when `auto`, else when the test calls `Scene.run_job`."""

    def __init__(self, scene: Scene, auto: bool = True) -> None:
        self.scene = scene
        self.auto = auto
        self.enqueued: list[str] = []

    def enqueue(self, answer_id: str) -> None:
        self.enqueued.append(answer_id)
        if self.auto:
            self.scene.run_job(answer_id)


class WebProcess:
    """One web process: its own runtime, waiter, PassiveDelivery and webhook."""

    def __init__(self, scene: Scene) -> None:
        settings, clock = scene.settings, scene.clock
        self.runtime = scene.make_runtime()
        self.waiter = scene.bus.add(FakeWaiter(clock))
        runtime = self.runtime
        self.delivery = PassiveDelivery(
            settings,
            runtime.answers,
            runtime.pushes,
            cast(ReadyWaiter, self.waiter),
            runtime.metrics,
            clock=clock.monotonic,
            sleep=clock.sleep,
        )
        router = Router(runtime, cast(Jobs, scene.jobs))
        protocol = WeChatProtocol(settings, clock=clock.time)
        self.webhook = Webhook(runtime, router, protocol, self.delivery)


class Scene:
    """A bot (web processes and a job worker) on the real Redis, and WeChat, in fake time."""

    def __init__(
        self,
        settings: Settings,
        *,
        processes: int = 1,
        auto_jobs: bool = True,
        route: Callable[[int], int] | None = None,
    ) -> None:
        """`processes` web processes share the Redis; `route(attempt number)` picks the process of an
        attempt (default: attempt n goes to process (n - 1) % processes)."""
        self.settings = settings
        self.clock = FakeClock()
        self.backend = ScriptedBackend(self.clock)
        self.jobs = SceneJobs(self, auto=auto_jobs)
        #: WeChat's customer-service API, for active delivery (WECHAT_REPLY_MODE=active)
        self.cs = CustomerService(self.clock)
        self._runtimes: list[Runtime] = []
        self.bus = ReadyBus(self.clock, settings.redis_url)
        try:
            self.worker = self.make_runtime()
            self.web = [WebProcess(self) for _ in range(processes)]
        except BaseException:
            self.close()
            raise
        self.route = route or (lambda number: (number - 1) % processes)
        mode = "safe" if settings.wechat_aes_key else "plain"
        aes_key = settings.wechat_aes_key or None
        self.wechat = WeChatSimulator(
            "http://scene.invalid/wechat", TOKEN, APPID, aes_key=aes_key, mode=mode, clock=self.clock.time
        )
        self.attempt_timeout = settings.wechat_attempt_timeout
        self.attempts = settings.wechat_attempts
        self.pushes: list[Push] = []
        self.job_tasks: dict[str, list[Task]] = {}
        self._names = itertools.count(1)

    def make_runtime(self) -> Runtime:
        client = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        runtime = Runtime(self.settings, client)
        runtime.__dict__["backend"] = self.backend  # a cached_property: the fake stands in for it
        if self.settings.wechat_reply_mode == "active":
            runtime.__dict__["wechat"] = self.cs
            runtime.sender.sleep = self.clock.sleep
        self._runtimes.append(runtime)
        return runtime

    @property
    def runtime(self) -> Runtime:
        """The first web process's runtime (its stores read the shared Redis)."""
        return self.web[0].runtime

    @property
    def now(self) -> float:
        return self.clock.now

    # --- the job worker -------------------------------------------------------------------------
    def run_job(self, answer_id: str, *, at: float | None = None) -> Task:
        """Run AnswerJob for this answer in-process, from fake time `at` (default: now)."""
        job = AnswerJob(self.worker)
        task = self.clock.spawn(lambda: job.run(answer_id), at=at, name=f"job {answer_id[:8]}")
        self.job_tasks.setdefault(answer_id, []).append(task)
        return task

    def jobs_done(self) -> bool:
        return all(task.done for tasks in self.job_tasks.values() for task in tasks)

    # --- WeChat's side ----------------------------------------------------------------------------
    def send(
        self,
        openid: str,
        content: str,
        *,
        at: float | None = None,
        request_delay: float = 0.0,
        response_delay: float = 0.0,
    ) -> Push:
        """Schedule a text message from `openid` at fake time `at` (default: now). Each POST reaches
        the bot `request_delay` fake seconds after WeChat sent it (e.g. queued behind a busy web tier),
        and each of the bot's responses takes `response_delay` to reach WeChat."""
        xml = self.wechat.text_xml(openid, content)
        sent = self.now if at is None else at
        push = Push(openid, content, sent, Delivery(openid, int(parse_xml(xml)["MsgId"])))
        push.task = self.clock.spawn(
            lambda: self._deliver(push, xml, (request_delay, response_delay)),
            at=sent,
            name=f"push {next(self._names)} {content[:12]}",
        )
        self.pushes.append(push)
        return push

    def say(
        self,
        openid: str,
        content: str,
        *,
        at: float | None = None,
        request_delay: float = 0.0,
        response_delay: float = 0.0,
    ) -> Push:
        """Send a message (see `send`) and run the world until WeChat is done with it."""
        push = self.send(openid, content, at=at, request_delay=request_delay, response_delay=response_delay)
        self.run_until(lambda: push.done)
        return push

    def run_until(self, condition: Callable[[], bool]) -> None:
        if not self.clock.run_until(condition):
            raise AssertionError(f"nothing left to run at t={self.now:g} and the condition does not hold")

    def settle(self) -> None:
        """Run until WeChat is done with every push sent so far."""
        self.run_until(lambda: all(push.done for push in self.pushes))

    def advance_to(self, when: float) -> None:
        """Let fake time pass until `when`, running whatever happens meanwhile."""
        self.clock.advance_to(when)

    def _deliver(self, push: Push, xml: str, delays: tuple[float, float]) -> None:
        """WeChat: attempt after attempt until one is answered properly in time."""
        body, encrypted = self.wechat.envelope(xml)
        for number in range(1, self.attempts + 1):
            params = self.wechat.signed_params(push.openid, encrypted)
            arrived = self.now
            attempt = AttemptLog(number, self.route(number), arrived, arrived + self.attempt_timeout)
            push.attempts.append(attempt)
            push.waiting_on = attempt
            self.clock.spawn(
                partial(self._attempt, push, attempt, params, body, delays),
                name=f"attempt {number} of {push.content[:12]}",
            )
            while attempt.reached is None and self.now < attempt.deadline:
                self.clock.suspend(attempt.deadline, pokeable=True)
            push.waiting_on = None
            if attempt.reached is None or attempt.late:
                attempt.verdict = "timeout"
                push.delivery.attempts.append(
                    Attempt("timeout", self.attempt_timeout, b"", params, "timeout")
                )
                continue
            judged = self.wechat._judge(
                Attempt(attempt.status or 0, attempt.reached - arrived, attempt.body.encode(), params),
                push.delivery,
            )
            push.delivery.attempts.append(judged)
            if judged.problem is None:
                attempt.verdict = "ack" if push.delivery.acknowledged else "reply"
                break
            attempt.verdict, attempt.problem = "refused", judged.problem
        push.done = True

    def _attempt(
        self,
        push: Push,
        attempt: AttemptLog,
        params: dict[str, str],
        body: bytes,
        delays: tuple[float, float],
    ) -> None:
        """The POST travels to the bot, a web process handles it, its response travels to WeChat."""
        request_delay, response_delay = delays
        if request_delay > 0:
            self.clock.sleep(request_delay)
        webhook = self.web[attempt.process].webhook

        def connected() -> bool:  # WeChat hangs up on an attempt at its deadline
            return self.now < attempt.deadline

        out = webhook.handle(Inbound("POST", params, body, self.clock.monotonic(), connected))
        attempt.answered, attempt.status, attempt.body = self.now, out.status, out.body
        if response_delay > 0:
            self.clock.sleep(response_delay)
        attempt.reached = self.now
        if push.waiting_on is attempt and push.task is not None:
            self.clock.poke(push.task)

    # --- reading Redis through the bot's own stores -------------------------------------------------
    def history(self, openid: str) -> list[str]:
        return [str(message["content"]) for message in self.runtime.history.messages(openid)]

    def close(self) -> None:
        self.clock.close()
        for runtime in self._runtimes:
            runtime.close()
        self.bus.close()


@contextmanager
def scene(settings: Settings, **options: Any) -> Iterator[Scene]:
    opened = Scene(settings, **options)
    try:
        yield opened
    finally:
        opened.close()
