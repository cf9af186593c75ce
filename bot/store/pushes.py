"""Inbound pushes in Redis: the replay guard, de-duplication, attempt counting and the one reply each
push gets.

WeChat delivers a message up to three times with the same MsgId, possibly to different processes
or machines. The first delivery decides what to do (its *plan*); every delivery of the same
push then gives the same reply, and only the first one starts any work.

A push costs one round trip here before its plan (`bind_signature`: the replay guard and the attempt
count in one script, with the plan and reply of an earlier delivery) and one after it (`save_plan`), or
only the first when its plan needs nothing from Redis (`Planned`: saved by the same script).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis
from redis.client import Pipeline
from redis.typing import EncodableT
from wechatpy.messages import BaseMessage

from bot.store import keys
from bot.store.direct import DirectConnections, DirectScript

PlanKind = Literal["reply", "image", "silent", "ask", "fetch"]

#: The replay guard and, for a push, the count of its deliveries, atomically. k: the signature's record,
#: then (for a push) the push's record. a: the request's digest, the record's lifetime, the push record's
#: lifetime. Returns {-1} for a replay (the signature came with another request first), {0} for a URL
#: check, else {attempt, plan or false, reply or false}: an earlier delivery's plan and reply.
ARRIVE_FUNCTION = """
local function arrive(k, a)
    if not redis.call('SET', k[1], a[1], 'NX', 'EX', a[2]) then
        if redis.call('GET', k[1]) ~= a[1] then return {-1} end
    end
    if not k[2] then return {0} end
    local attempt = redis.call('HINCRBY', k[2], 'attempts', 1)
    redis.call('EXPIRE', k[2], a[3])
    if attempt == 1 then return {1} end
    local earlier = redis.call('HMGET', k[2], 'plan', 'reply')
    return {attempt, earlier[1], earlier[2]}
end
"""
ARRIVE = ARRIVE_FUNCTION + "return arrive(KEYS, ARGV)\n"
#: ARRIVE, then other stores' work on a push's first delivery only (`OnFirst`, whose function sources
#: precede this one, called by name): KEYS after ARRIVE's two are theirs, one part after the other;
#: ARGV after ARRIVE's three holds a plan made before the arrival (`Planned`: its JSON, or '' for none),
#: the plan for when a part refused the push (or ''), that part's number (1-based; 0: none; it returns
#: a table whose third value is 1 when it refused), then for each part its number of keys, its number
#: of arguments, then its arguments. Each part's return value follows ARRIVE's {1, plan or false, false}:
#: the plan is the one this script saved (for a planned push), else false.
ARRIVE_THEN = """
local result = arrive({KEYS[1], KEYS[2]}, {ARGV[1], ARGV[2], ARGV[3]})
if result[1] == 1 then
    result[2], result[3] = false, false
    local ki, ai = 3, 7
    for i, part in ipairs({%s}) do
        local nk, na = tonumber(ARGV[ai]), tonumber(ARGV[ai + 1])
        local k, a = {}, {}
        for j = 1, nk do k[j] = KEYS[ki + j - 1] end
        for j = 1, na do a[j] = ARGV[ai + 1 + j] end
        ki, ai = ki + nk, ai + 2 + na
        result[3 + i] = part(k, a) or false
    end
    if ARGV[4] ~= '' then
        local gate = tonumber(ARGV[6])
        local refused = gate > 0 and result[3 + gate][3] == 1
        result[2] = refused and ARGV[5] or ARGV[4]
        redis.call('HSET', KEYS[2], 'plan', result[2])
    end
end
return result
"""


@dataclass(frozen=True)
class OnFirst:
    """Work of another store that runs inside the arrival script, on a push's first delivery only (so
    that it costs no round trip of its own, and never runs for a replay or a retry): the source of a Lua
    function `name(k, a)`, and its keys and arguments. What it returns is in `Arrival.first`."""

    function: str
    name: str
    keys: list[str]
    args: list[EncodableT]


@dataclass(frozen=True)
class Plan:
    """What a push asks of us: a ready reply, nothing, or an answer to deliver."""

    kind: PlanKind
    text: str = ""
    answer_id: str = ""
    media_id: str = ""
    delivery: str = "passive"

    def to_json(self) -> str:
        fields = {
            "kind": self.kind,
            "text": self.text,
            "answer_id": self.answer_id,
            "media_id": self.media_id,
            "delivery": self.delivery,
        }
        return json.dumps(fields, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> Plan:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Planned:
    """A push's plan made before its arrival, from the message alone (a stateless reply: /help, an
    unknown command, an event that needs no answer…): the arrival script saves it on the first delivery,
    so that the push costs one round trip in all. `if_refused` is its plan for when the arrival's rate
    count refuses it (None: the rate is not counted)."""

    plan: Plan
    if_refused: Plan | None = None


@dataclass(frozen=True)
class Arrival:
    """A delivery of a push that passed the replay guard: which delivery it is (1: new; 0: a URL check,
    not a push), and what an earlier delivery planned and replied, if anything yet (on the first
    delivery of a `Planned` push: the plan the arrival saved)."""

    attempt: int
    plan: Plan | None = None
    reply: str | None = None
    #: on a first delivery, what each OnFirst part returned, in order (None for nothing)
    first: tuple[Any, ...] = ()


def dedup_key(message: BaseMessage) -> str:
    """MsgId for messages; FromUserName + CreateTime + Event for events (they have no MsgId)."""
    if getattr(message, "id", 0):
        return f"id:{message.id}"
    event = getattr(message, "event", "") or message.type
    created = int(message.create_time.timestamp()) if message.create_time else 0
    return f"ev:{message.source}:{created}:{event}"


class PushLog:
    """The shared record of every push: how many times it arrived, its plan and its reply."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        # on connections of their own: the push's one round trip without redis-py's wrapping (direct.py)
        self._connections = DirectConnections(client)
        self._arrive = DirectScript(self._connections, ARRIVE)
        self._arrive_then: dict[tuple[str, ...], DirectScript] = {}  # by the OnFirst parts' function sources

    def pipeline(self) -> Pipeline:
        """A pipeline (no MULTI) in which several stores queue the writes of one push: one round trip."""
        return self.redis.pipeline(transaction=False)

    def save_plan(self, key: str, plan: Plan, pipe: Pipeline | None = None) -> None:
        (pipe or self.redis).hset(keys.message(key), "plan", plan.to_json())

    def plan(self, key: str, wait: float = 2.0) -> Plan | None:
        """The plan the first delivery made (waits briefly in case it is being made right now)."""
        deadline = time.monotonic() + wait
        while True:
            raw = self.redis.hget(keys.message(key), "plan")
            if raw is not None:
                return Plan.from_json(str(raw))
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def reply(self, key: str) -> str | None:
        """The text this push was already answered with, if any."""
        raw = self.redis.hget(keys.message(key), "reply")
        return None if raw is None else str(raw)

    def save_reply(self, key: str, text: str) -> None:
        self.redis.hset(keys.message(key), "reply", text)

    def bind_signature(
        self,
        timestamp: str,
        nonce: str,
        digest: str,
        accepted_until: float,
        now: float,
        push: str = "",
        on_first: OnFirst | Sequence[OnFirst] = (),
        planned: Planned | None = None,
        gate: int = 0,
    ) -> Arrival | None:
        """The replay guard: bind a signature (timestamp + nonce) to the first request it came with
        (`digest`); None when it came with another one before (a replay). With `push` (a push's
        de-duplication key), the same round trip counts the delivery of the push (`Arrival.attempt`,
        1 when it is new), reads what an earlier delivery planned and replied, and on the first delivery
        runs each `on_first` part (`Arrival.first`: what they returned) and saves the `planned` plan —
        its `if_refused` plan when the part numbered `gate` (1-based) refused the push.

        The signature's record lives as long as the signature can be accepted — until `accepted_until`,
        which the push's own timestamp sets, not its arrival — and SIGNED_SLACK longer, for a web process
        whose clock is behind `now`'s: a signature is never forgotten while it still opens the door.
        """
        ttl = max(1, math.ceil(accepted_until - now)) + keys.SIGNED_SLACK
        names = [keys.signed(timestamp, nonce)] + ([keys.message(push)] if push else [])
        args: list[EncodableT] = [digest, ttl, keys.MESSAGE_TTL]
        parts = [on_first] if isinstance(on_first, OnFirst) else list(on_first)
        script, ahead = self._arrive, _planned_args(planned, gate)
        if push and (parts or planned):
            script = self._script_then(parts)
            args += ahead
            for part in parts:
                names += part.keys
                args += [len(part.keys), len(part.args), *part.args]
        found = script(keys=names, args=args)
        attempt = int(found[0])
        if attempt < 0:
            return None
        plan, reply = [*found[1:], None, None][:2]
        if attempt == 1 and planned is not None and plan is not None:  # one of the two it sent: no parsing
            chosen = planned.plan if plan == ahead[0] else planned.if_refused
        else:
            chosen = None if plan is None else Plan.from_json(str(plan))
        return Arrival(
            attempt, chosen, None if reply is None else str(reply), tuple(found[3:]) if attempt == 1 else ()
        )

    def close(self) -> None:
        """Close the arrival scripts' idle connections."""
        self._connections.close()

    def _script_then(self, parts: Sequence[OnFirst]) -> DirectScript:
        """The arrival script with these parts (built once per process for each combination; loaded into Redis
        by its first call)."""
        functions = tuple(part.function for part in parts)
        script = self._arrive_then.get(functions)
        if script is None:
            calls = ARRIVE_THEN % ", ".join(part.name for part in parts)
            script = self._arrive_then[functions] = DirectScript(
                self._connections, ARRIVE_FUNCTION + "".join(functions) + calls
            )
        return script


def _planned_args(planned: Planned | None, gate: int) -> list[EncodableT]:
    """ARRIVE_THEN's arguments for a plan made before the arrival: '' for none."""
    if planned is None:
        return ["", "", 0]
    refused = planned.if_refused
    return [planned.plan.to_json(), "" if refused is None else refused.to_json(), gate if refused else 0]
