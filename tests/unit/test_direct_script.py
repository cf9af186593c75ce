"""The arrival script's own connections (bot/store/direct.py) keep what redis-py's client did for it: a
script Redis does not have is loaded, a connection Redis closed is replaced, a failed connection is never
reused, a script's error is the caller's, and Redis down is a RedisError — with a real redis-server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from bot.ops.processes import free_port
from bot.ops.redis_server import RedisServer
from bot.store import keys
from bot.store.direct import CLIENT_NAME, DirectConnections, DirectScript
from bot.store.pushes import PushLog
from testing.patience import wait_for

T = TypeVar("T")

#: the name of the test's connections: those of other runtimes alive in this process are not counted
NAME = f"{CLIENT_NAME}-test"
ECHO = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}"
#: a script that keeps Redis busy for 0.6 s, then answers 'late'
SLOW = """
local function now() local t = redis.call('TIME') return t[1] * 1e6 + t[2] end
local start = now()
while now() - start < 600000 do end
return 'late'
"""


@pytest.fixture
def connections(redis_client: redis.Redis) -> Iterator[DirectConnections]:
    found = DirectConnections(redis_client, keep_idle=4, name=NAME)
    yield found
    found.close()


def ours(client: redis.Redis) -> list[dict[str, str]]:
    """The test's direct connections Redis has (by their name)."""
    return [c for c in client.client_list() if c["name"] == NAME]


def test_a_script_redis_does_not_have_is_loaded_and_run(
    redis_client: redis.Redis, connections: DirectConnections
) -> None:
    script = DirectScript(connections, ECHO)
    redis_client.script_flush()
    assert script(["k"], ["a", 41]) == ["k", "a", 42]  # EVAL with the source
    assert redis_client.script_exists(script.sha) == [True]
    assert script(["k2"], ["b", 1.5]) == ["k2", "b", 2]  # EVALSHA from now on (Lua's 2.5: an integer)


def test_a_connection_redis_closed_while_idle_is_replaced(
    redis_client: redis.Redis, connections: DirectConnections
) -> None:
    script = DirectScript(connections, ECHO)
    assert script(["k"], ["a", 1]) == ["k", "a", 2]
    (idle,) = ours(redis_client)
    redis_client.client_kill_filter(_id=idle["id"])  # as a restart of Redis would
    assert script(["k"], ["b", 2]) == ["k", "b", 3]
    wait_for(lambda: len(ours(redis_client)) == 1, what="only the new one")  # the closed one was dropped


def test_a_scripts_own_error_is_raised_and_its_connection_kept(
    redis_client: redis.Redis, connections: DirectConnections
) -> None:
    failing = DirectScript(connections, "return redis.error_reply('no such thing')")
    with pytest.raises(redis.exceptions.ResponseError, match="no such thing"):
        failing([], [])
    assert len(ours(redis_client)) == 1
    assert DirectScript(connections, ECHO)(["k"], ["a", 0]) == ["k", "a", 1]
    assert len(ours(redis_client)) == 1  # the same connection, reused


def test_redis_down_is_a_redis_error(refused_port: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=refused_port, socket_connect_timeout=1)
    connections = DirectConnections(client)
    with pytest.raises(redis.exceptions.ConnectionError):
        DirectScript(connections, ECHO)(["k"], ["a", 1])
    connections.close()
    client.close()


def test_calls_at_once_each_have_a_connection_and_few_stay_open(
    redis_client: redis.Redis, connections: DirectConnections
) -> None:
    script = DirectScript(connections, "redis.call('INCR', KEYS[1]) return redis.call('GET', KEYS[1])")
    start = threading.Barrier(12)
    results: list[str] = []

    def call() -> None:
        start.wait()
        results.extend(str(script(["counter"], [])) for _ in range(20))

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(int, results)) == list(range(1, 241))  # every call answered, each once
    assert len(ours(redis_client)) <= 4  # keep_idle: the others were closed when given back
    connections.close()
    wait_for(lambda: ours(redis_client) == [], what="Redis to see them closed")


def test_a_forked_process_does_not_reuse_the_parents_connections(
    redis_client: redis.Redis, connections: DirectConnections
) -> None:
    script = DirectScript(connections, ECHO)
    script(["k"], ["a", 1])
    parent = connections.take()
    connections.give_back(parent)
    connections._pid = -1  # as in a child after fork: the pid it recorded is not its own
    child = connections.take()
    assert child is not parent
    connections.give_back(child)


class LosesAReply(redis.Connection):
    """A connection whose next reply, once `armed`, is lost after Redis sent it: the script ran, then the
    connection broke before its answer was read (a network blip, Redis killed right after the script)."""

    armed = False

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        found = super().read_response(*args, **kwargs)
        if LosesAReply.armed:
            LosesAReply.armed = False
            self.disconnect()
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        return found


def test_a_reply_lost_after_the_script_ran_does_not_run_it_again(redis_server: RedisServer) -> None:
    """As through the client (`make_redis`: from_url, whose connections retry nothing): the push is
    refused (SERVICE_DOWN), and counted once — not run a second time and taken for WeChat's retry."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True, connection_class=LosesAReply)
    log = PushLog(client)
    try:
        assert log.bind_signature("1", "warm", "d0", 1e10, 0.0, push="p0") is not None  # one idle connection
        LosesAReply.armed = True
        with pytest.raises(redis.exceptions.ConnectionError):
            log.bind_signature("1", "n", "d1", 1e10, 0.0, push="p1")
        assert client.hget(keys.message("p1"), "attempts") == "1"  # it ran once
    finally:
        LosesAReply.armed = False
        log.close()
        client.close()


def test_a_redis_restart_leaves_no_push_unanswered(tmp_path: Path) -> None:
    """Redis restarted while the process keeps idle connections: the pushes that follow (one, then several
    at once) are each answered, and counted once."""
    with RedisServer(tmp_path / "redis", port=free_port()) as server:
        client = redis.Redis.from_url(
            server.url, decode_responses=True, socket_timeout=10, health_check_interval=30
        )
        log = PushLog(client)
        try:
            at_once(6, lambda i: log.bind_signature("1", f"a{i}", "d", 1e10, 0.0, push=f"a{i}"))
            server.stop()
            server.start()
            arrival = log.bind_signature("1", "b", "d", 1e10, 0.0, push="b")
            assert arrival is not None and arrival.attempt == 1
            found = at_once(6, lambda i: log.bind_signature("1", f"c{i}", "d", 1e10, 0.0, push=f"c{i}"))
            assert [arrival.attempt if arrival else None for arrival in found] == [1] * 6
        finally:
            log.close()
            client.close()


def test_a_reply_that_times_out_is_not_read_by_the_next_call(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """The script outlasts the socket's timeout: its late reply, left on the connection, must not become
    the next call's answer."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=0.3)
    connections = DirectConnections(client, name=NAME)
    slow = DirectScript(connections, SLOW)
    try:
        with pytest.raises(redis.exceptions.TimeoutError):
            slow([], [])
        assert redis_client.ping()  # answered once the script is over: its reply is on the socket now
        assert DirectScript(connections, ECHO)(["k"], ["a", 1]) == ["k", "a", 2]
        assert DirectScript(connections, ECHO)(["k"], ["b", 2]) == ["k", "b", 3]
    finally:
        connections.close()
        client.close()


@pytest.mark.parametrize("argument", [None, True, [1], "\ud800"])
def test_an_argument_hiredis_cannot_pack_is_a_redis_error(
    connections: DirectConnections, argument: Any
) -> None:
    """As through redis-py (a DataError), and a string UTF-8 cannot encode too: the webhook answers politely
    (SERVICE_DOWN), never with a 500."""
    with pytest.raises(redis.exceptions.DataError):
        DirectScript(connections, ECHO)(["k"], [argument, 1])


def at_once(count: int, call: Callable[[int], T]) -> list[T]:
    """`call(i)` for i in range(count), in as many threads started together; their results in order."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        start.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_burst_keeps_its_connections_for_the_next_burst(redis_client: redis.Redis) -> None:
    """50 pushes at once in one web process (100 followers from one article): their connections stay open
    for the next burst, which opens none (keeping 32 reopened the rest at every burst)."""
    connections = DirectConnections(redis_client, name=NAME)
    try:
        burst = [connections.take() for _ in range(50)]
        for connection in burst:
            connection.send_command("PING")
            assert connection.read_response() in (b"PONG", "PONG")
        for connection in burst:
            connections.give_back(connection)
        again = [connections.take() for _ in range(50)]
        assert {id(c) for c in again} == {id(c) for c in burst}
        assert len(ours(redis_client)) == 50
        for connection in again:
            connections.give_back(connection)
    finally:
        connections.close()
    wait_for(lambda: ours(redis_client) == [], what="Redis to see them closed")
