"""Whether the client of a held request is still connected: WeChat (or nginx in front of us) closes its
side when it stops waiting for an attempt.

Hand-written because neither gunicorn nor Flask offers it: WSGI has no "client gone" signal, and a
reply written after the client left is not an error anyone sees (the kernel takes the bytes)."""

from __future__ import annotations

import select
import socket


def still_connected(sock: socket.socket | None) -> bool:
    """False once the peer has closed its side (or the connection broke); True while it is open, and
    when there is no socket to ask (a server that does not expose it)."""
    if sock is None:
        return True
    try:
        poller = select.poll()  # not select(): no limit on the descriptor's number
        poller.register(sock, select.POLLIN | select.POLLPRI)
        if not poller.poll(0):
            return True  # nothing to read: the peer has not closed
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except (OSError, ValueError):
        return False
