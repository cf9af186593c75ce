"""The load generator: K keep-alive connections pushing signed `/help` messages for a fixed time.

It runs in its own process(es) (multiprocessing, spawn) so that its CPU use is not hidden inside
the benchmark's own interpreter; the server still shares the machine's cores with it, the same
way for the bot and for the bare baseline. Each push has a fresh MsgId, so the bot's
de-duplication treats every one as new (attempt 1) and answers the command at once.
"""

from __future__ import annotations

import dataclasses
import http.client
import multiprocessing
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from urllib.parse import urlencode

from testing.simulator import MsgIdGenerator, WeChatSimulator

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 10.0
#: the load process must report back within this much more than warm-up + duration
JOIN_GRACE = 30.0
#: time given to the spawned processes to start before the warm-up counts
SPAWN_TIME = 1.5


@dataclass(frozen=True)
class LoadSpec:
    port: int
    token: str
    appid: str
    aes_key: str | None  # set: safe mode (encrypted pushes)
    connections: int
    warmup: float
    duration: float
    expect: bytes  # a 200 whose body lacks this is counted as a bad body
    msg_id_start: int  # distinct per run: a repeated MsgId would be treated as WeChat's retry
    users: int = 100
    #: monotonic time at which the measured window opens (CLOCK_MONOTONIC is shared by processes)
    start_at: float = 0.0


@dataclass
class LoadResult:
    """Requests completed inside the measured window (after the warm-up)."""

    duration: float
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    bad_bodies: int = 0

    def merge(self, other: LoadResult) -> None:
        self.latencies += other.latencies
        self.errors.update(other.errors)
        self.bad_bodies += other.bad_bodies


class _Pusher:
    """One connection's loop; the windows are absolute monotonic times shared by all threads."""

    def __init__(self, spec: LoadSpec, index: int, ids: MsgIdGenerator, window: tuple[float, float]) -> None:
        self.spec = spec
        self.index = index
        self.ids = ids
        self.start, self.end = window
        mode = "safe" if spec.aes_key else "plain"
        self.simulator = WeChatSimulator(
            f"http://{HOST}:{spec.port}/wechat", spec.token, spec.appid, aes_key=spec.aes_key, mode=mode
        )
        self.result = LoadResult(spec.duration)
        self.sent = 0

    def request(self) -> tuple[bytes, str]:
        """A fresh signed push (body, path): what WeChat would POST for a user typing /help."""
        openid = f"bench-user-{(self.index * 7919 + self.sent) % self.spec.users}"
        self.sent += 1
        xml = self.simulator.text_xml(openid, "/help", msg_id=self.ids())
        body, encrypted = self.simulator.envelope(xml)
        params = self.simulator.signed_params(openid, encrypted)
        return body, "/wechat?" + urlencode(params)

    def run(self) -> None:
        connection = http.client.HTTPConnection(HOST, self.spec.port, timeout=REQUEST_TIMEOUT)
        try:
            while (now := time.monotonic()) < self.end:
                connection = self._one(connection, now >= self.start)
        finally:
            connection.close()

    def _one(self, connection: http.client.HTTPConnection, measured: bool) -> http.client.HTTPConnection:
        body, path = self.request()
        began = time.monotonic()
        try:
            connection.request("POST", path, body=body, headers={"Content-Type": "text/xml"})
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            if measured:
                self.result.errors[type(exc).__name__] += 1
            connection.close()  # http.client reconnects on the next request
            return connection
        done = time.monotonic()
        if measured and done <= self.end:
            self._record(response.status, data, done - began)
        return connection

    def _record(self, status: int, data: bytes, latency: float) -> None:
        self.result.latencies.append(latency)
        if status != 200:
            self.result.errors[f"HTTP {status}"] += 1
        elif self.spec.expect not in data:
            self.result.bad_bodies += 1


def generate(spec: LoadSpec, first_index: int, threads: int, sender: Connection) -> None:
    """Entry point of one load process: run `threads` connections, send the merged result back."""
    ids = MsgIdGenerator(spec.msg_id_start + first_index * 1_000_000_000)
    start = spec.start_at
    pushers = [_Pusher(spec, first_index + i, ids, (start, start + spec.duration)) for i in range(threads)]
    workers = [threading.Thread(target=p.run, daemon=True) for p in pushers]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0.0, spec.start_at + spec.duration - time.monotonic()) + REQUEST_TIMEOUT + 5)
    total = LoadResult(spec.duration)
    for pusher in pushers:
        total.merge(pusher.result)
    sender.send(total)
    sender.close()


def run_load(spec: LoadSpec, processes: int = 1) -> LoadResult:
    """Run the load in `processes` spawned processes sharing the connections; bounded in time."""
    spec = dataclasses.replace(spec, start_at=time.monotonic() + SPAWN_TIME + spec.warmup)
    total = LoadResult(spec.duration)
    running: list[tuple[BaseProcess, Connection]] = []
    reported = False
    try:
        shares = _split(spec.connections, processes)
        for index, threads in enumerate(shares):
            running.append(_spawn(spec, sum(shares[:index]), threads))
        for _, receiver in running:
            total.merge(_receive(receiver, SPAWN_TIME + spec.warmup + spec.duration + JOIN_GRACE))
        reported = True
    finally:
        for child, _ in running:
            _end(child, 5.0 if reported else 0.0)
    return total


def _spawn(spec: LoadSpec, first: int, threads: int) -> tuple[BaseProcess, Connection]:
    """Spawn (not fork: the parent has threads) one load process; its result comes over a pipe."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=generate, args=(spec, first, threads, sender), daemon=True)
    child.start()
    sender.close()
    return child, receiver


def _end(child: BaseProcess, grace: float) -> None:
    """Let a process that has reported exit by itself; kill it at once when interrupted."""
    child.join(grace)
    if child.is_alive():
        child.kill()
        child.join(5)


def _receive(receiver: Connection, timeout: float) -> LoadResult:
    if not receiver.poll(timeout):
        raise RuntimeError("the load generator did not report in time")
    try:
        result = receiver.recv()
    except EOFError:
        raise RuntimeError("the load generator died without reporting") from None
    assert isinstance(result, LoadResult)
    return result


def _split(total: int, parts: int) -> list[int]:
    """`total` connections over `parts` processes, as evenly as possible."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
