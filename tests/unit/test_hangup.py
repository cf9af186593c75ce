"""bot/delivery/hangup.py: a client that closed its side is told from one that is still waiting."""

from __future__ import annotations

import socket

from bot.delivery.hangup import still_connected


def test_a_waiting_client_is_connected_and_one_that_hung_up_is_not() -> None:
    server, client = socket.socketpair()
    try:
        assert still_connected(server)
        client.sendall(b"more")  # data waiting (say a pipelined request) is not a hang-up
        assert still_connected(server)
        assert server.recv(4) == b"more"
        client.close()
        assert not still_connected(server)
    finally:
        server.close()


def test_a_closed_socket_or_none() -> None:
    server, client = socket.socketpair()
    client.close()
    server.close()
    assert not still_connected(server)
    assert still_connected(None)  # no socket to ask (a server that does not expose it): assume it waits
