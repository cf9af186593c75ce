"""The throughput load generator: wrk, fed by pre-signed pushes, one of them per request, never reused.

A Python generator was the bottleneck of the old figures (its bare Flask reached 2,977 req/s, wrk
3,641 on the same machine): wrk (C, epoll) sends what a Lua script hands it. WeChat signs each push
with its own nonce and timestamp, and the replay guard binds a signature to the first request it came
with, so every request here is a new signed push: the file holds more pushes than the run can send
(sized from MAX_RATE), each with a fresh nonce, a unique MsgId and one of `senders` openids. The Lua
script gives each wrk thread its own share and checks every response body (a real reply XML for the
bot, `success` for the bare app); a share that runs out is counted (`reused`), so a figure made with
a repeated push never goes unnoticed.

`apt-get install wrk` (Debian's package) provides it; `make bench` says so when it is missing.
"""

from __future__ import annotations

import itertools
import json
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from testing.simulator import MsgIdGenerator, WeChatSimulator, sign

HOST = "127.0.0.1"
#: pushes generated per measured second: above anything two cores serve (the bare app: ~4,000/s)
MAX_RATE = 9000
#: wrk's own threads (its event loops); two keep it far from being the bottleneck on two cores
THREADS = 2
#: a run that has not reported this long after its duration is killed
GRACE = 30.0
#: nonces of the run's pushes: ten digits like WeChat's, each used once (from a random start)
_NONCES = itertools.count(1_000_000_000 + secrets.randbelow(4_000_000_000))

LUA = r"""
-- args: the file of pre-signed pushes (path TAB body per line), wrk's thread count, the expected bytes
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads, line_no = tonumber(args[2]), 0
  expect = args[3]
  pushes, index, bad, statuses, reused = {}, 0, 0, 0, 0
  for line in io.lines(args[1]) do
    if line_no % nthreads == id then
      local tab = line:find("\t", 1, true)
      pushes[#pushes + 1] = wrk.format("POST", line:sub(1, tab - 1),
        {["Content-Type"] = "text/xml", ["Host"] = "127.0.0.1"}, line:sub(tab + 1))
    end
    line_no = line_no + 1
  end
end

function request()
  index = index + 1
  if index > #pushes then
    reused = reused + 1
    index = 1
  end
  return pushes[index]
end

function response(status, headers, body)
  if status ~= 200 then
    statuses = statuses + 1
  elseif not body:find(expect, 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local bad_total, status_total, reused_total = 0, 0, 0
  for _, thread in ipairs(threads) do
    bad_total = bad_total + thread:get("bad")
    status_total = status_total + thread:get("statuses")
    reused_total = reused_total + thread:get("reused")
  end
  local errors = summary.errors
  io.write("WRK-JSON ", string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, '
    .. '"non_200": %d, "bad_bodies": %d, "reused": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, errors.connect, errors.read, errors.write, errors.timeout,
    status_total, bad_total, reused_total))
end
"""


@dataclass(frozen=True)
class Pushes:
    """What to send: signed `/help` text pushes like WeChat's (encrypted in safe mode)."""

    port: int
    token: str
    appid: str
    aes_key: str | None
    senders: int = 5000
    content: str = "/help"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    bad_bodies: int
    reused: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration if self.duration else 0.0


def available() -> bool:
    return shutil.which("wrk") is not None


def write_pushes(pushes: Pushes, count: int, path: Path, ids: MsgIdGenerator) -> None:
    """`count` signed pushes, one per line: `path?query` TAB body (a body never holds a tab or newline)."""
    mode = "safe" if pushes.aes_key else "plain"
    sim = WeChatSimulator(
        f"http://{HOST}:{pushes.port}/wechat", pushes.token, pushes.appid, aes_key=pushes.aes_key, mode=mode
    )
    first = secrets.randbelow(pushes.senders)
    lines = []
    for n in range(count):
        openid = f"bench-user-{(first + n) % pushes.senders:04d}"
        body, encrypted = sim.envelope(sim.text_xml(openid, pushes.content, msg_id=ids()))
        params = _unique_nonce(sim.signed_params(openid, encrypted), pushes.token, encrypted)
        text = body.decode()
        assert "\t" not in text and "\n" not in text
        lines.append(f"/wechat?{urlencode(params)}\t{text}\n")
    path.write_text("".join(lines))


def _unique_nonce(params: dict[str, str], token: str, encrypted: str | None) -> dict[str, str]:
    """The push signed again with a nonce no other push of this run has. WeChat's nonces are random: tens
    of thousands of pushes signed in the same second drew the same one now and then, and the replay
    guard rightly refused the second push as a replay (a 403 that the figures counted as an error)."""
    nonce = str(next(_NONCES))
    signed = params | {"nonce": nonce, "signature": sign(token, params["timestamp"], nonce)}
    if encrypted is not None:
        signed["msg_signature"] = sign(token, params["timestamp"], nonce, encrypted)
    return signed


def run(
    port: int,
    pushes_file: Path,
    expect: str,
    connections: int,
    duration: float,
    workdir: Path,
    threads: int = THREADS,
) -> WrkResult:
    """One wrk run of `duration` seconds on `connections` keep-alive connections; bounded in time."""
    script = workdir / "pushes.lua"
    script.write_text(LUA)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://{HOST}:{port}/wechat",
        "--",
        str(pushes_file),
        str(threads),
        expect,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + GRACE, check=False)
    return parse(done.stdout, done.stderr)


def parse(stdout: str, stderr: str = "") -> WrkResult:
    line = next((line for line in stdout.splitlines() if line.startswith("WRK-JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk reported nothing:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    raw = json.loads(line.removeprefix("WRK-JSON "))
    errors = {
        name: int(raw[name])
        for name in ("connect_errors", "read_errors", "write_errors", "timeouts", "non_200")
        if raw[name]
    }
    return WrkResult(
        requests=int(raw["requests"]),
        duration=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=errors,
        bad_bodies=int(raw["bad_bodies"]),
        reused=int(raw["reused"]),
    )


def pushes_needed(duration: float) -> int:
    return int(MAX_RATE * (duration + 1))


def wait_a_moment() -> None:
    """Between the warm-up and the measured run: let the server's queues drain."""
    time.sleep(0.5)
