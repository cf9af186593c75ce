"""The arrival script's own connections (bot/store/direct.py) keep what redis-py's client did for it: a
script Redis does not have is loaded, a connection Redis closed is replaced, a failed connection is never
reused, a script's error is the caller's, and Redis down is a RedisError — with a real redis-server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from bot.store.direct import CLIENT_NAME, DirectConnections, DirectScript
from testing.patience import wait_for

#: the name of the test's connections: those of other runtimes alive in this process are not counted
NAME = f"{CLIENT_NAME}-test"
ECHO = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}"


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
