"""A Lua script called on connections of its own: the webhook's one round trip per push, without redis-py's
per-command machinery around it.

Why by hand: redis-py 8's client wraps every command in its retry loop, its observability recorders, the
connection pool's bookkeeping (a poll() of the socket at each checkout, events at each release) and a type
check of every argument before hiredis packs them. For the arrival script (about 14 keys and 30
arguments) that is 80–110 µs of CPU of a push's ~400 µs in the web process (bench/: alternating runs,
in-process and under wrk), where the round trip on the socket itself costs about 35 µs. redis-py has no
lighter public call for it; what talks to Redis here is still its Connection (socket, handshake, hiredis
parser, health check after idling), only the client's wrapping is left out.

What the wrapping did that this keeps: an idle connection Redis closed (a restart, its idle timeout) or
that holds anything unread is dropped before it carries a command, and another one is taken — the poll()
redis-py's pool makes at each checkout (about 1.5 µs); NOSCRIPT (Redis restarted or its scripts were
flushed) is answered by EVAL with the source, which loads it, as redis-py's Script does. A connection that
failed is never reused. A call is made once more, on a new connection, only when its command did not reach
Redis whole (a ConnectionError while connecting, in the health check's PING or while sending): once it was
sent the script may have run, and running the arrival script again would count a push's first delivery
as its second. The client this replaces retried nothing (`make_redis` builds it from a URL: its
connections' Retry makes no retries).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis
from redis.connection import AbstractConnection
from redis.typing import EncodableT

#: idle connections kept for the next calls: as many as the process ever ran at once, like redis-py's own
#: pool (whose limit, REDIS_MAX_CONNECTIONS in bot/runtime.py, this is). 32 closed, at every burst, the
#: connections a burst of pushes had opened beyond it — 100 followers from one article are 50 at once in
#: each web process — and the next burst opened them again (a connect, HELLO, CLIENT SETINFO, SETNAME).
KEEP_IDLE = 1024
#: their name in Redis' CLIENT LIST
CLIENT_NAME = "wxbot-direct"


class DirectConnections:
    """Connections to the client's Redis (its settings: address, timeouts, decoding), outside its pool: each
    call takes one and gives it back; one that failed is closed, never reused."""

    def __init__(self, client: redis.Redis, keep_idle: int = KEEP_IDLE, name: str = CLIENT_NAME) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = {**pool.connection_kwargs, "client_name": name}
        self._keep_idle = keep_idle
        self._idle: list[AbstractConnection] = []
        self._pid = os.getpid()

    def take(self) -> AbstractConnection:
        if self._pid != os.getpid():  # forked: the parent's sockets are not this process's
            self._idle, self._pid = [], os.getpid()
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return self.new()
            if _still_open(connection):
                return connection
            connection.disconnect()  # closed by Redis while it idled (a restart): the next one

    def new(self) -> AbstractConnection:
        connection: AbstractConnection = self._connection_class(**self._connection_kwargs)
        return connection

    def give_back(self, connection: AbstractConnection) -> None:
        if len(self._idle) < self._keep_idle and self._pid == os.getpid():
            self._idle.append(connection)
        else:
            connection.disconnect()

    def close(self) -> None:
        """Close the idle connections (one in use closes when its call gives it back)."""
        idle, self._idle = self._idle, []
        self._keep_idle = 0
        for connection in idle:
            connection.disconnect()


class DirectScript:
    """One Lua script, called as `script(keys, args)` on `connections`."""

    def __init__(self, connections: DirectConnections, source: str) -> None:
        self.connections = connections
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    def __call__(self, keys: Sequence[str], args: Sequence[EncodableT]) -> Any:
        tail = (len(keys), *keys, *args)
        command = _packed(("EVALSHA", self.sha, *tail))
        connection = self.connections.take()
        try:
            connection.send_packed_command([command])
        except redis.exceptions.ConnectionError:
            # not sent whole (a failed connect or health check, a send cut short), so not run: once more
            connection.disconnect()
            connection = self.connections.new()
            self._send(connection, command)
        except BaseException:
            connection.disconnect()
            raise
        # sent: whatever happens now, never sent again (the script may have run)
        return self._answer(connection, tail)

    def _send(self, connection: AbstractConnection, command: bytes) -> None:
        try:
            connection.send_packed_command([command])
        except BaseException:
            connection.disconnect()
            raise

    def _answer(self, connection: AbstractConnection, tail: tuple[EncodableT, ...]) -> Any:
        try:
            try:
                found = connection.read_response()
            except redis.exceptions.NoScriptError:  # not loaded (yet, or any more): EVAL loads it
                connection.send_packed_command([_packed(("EVAL", self.source, *tail))])
                found = connection.read_response()
        except redis.exceptions.ResponseError:  # the script's own error: the connection is fine
            self.connections.give_back(connection)
            raise
        except BaseException:
            connection.disconnect()
            raise
        self.connections.give_back(connection)
        return found


def _still_open(connection: AbstractConnection) -> bool:
    """Whether an idle connection can carry a command: Redis did not close it and nothing unread waits on
    it (redis-py's pool asks the same at each checkout)."""
    try:
        return not connection.can_read()
    except (redis.exceptions.RedisError, OSError):  # closed by Redis, or could not connect again
        return False


def _packed(command: tuple[EncodableT, ...]) -> bytes:
    """The command in Redis' protocol; an argument it cannot carry is a DataError, as through redis-py's
    client (a RedisError: the webhook refuses the push politely instead of failing with a 500)."""
    try:
        return hiredis.pack_command(cast(Any, command))
    except (TypeError, UnicodeEncodeError) as exc:
        raise redis.exceptions.DataError(str(exc)) from exc
