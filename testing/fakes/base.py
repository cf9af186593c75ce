"""A tiny HTTP/1.1 server on 127.0.0.1 that records every request; the fakes build on it.

HTTP/1.1 matters: streamed answers use chunked transfer encoding, so a connection cut in the middle
of a stream is seen by the client as an incomplete body (an error), not as a normal end.
"""

from __future__ import annotations

import contextlib
import email
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

HOST = "127.0.0.1"
JSON_TYPE = "application/json"
_JOIN_TIMEOUT = 5.0
#: how often the accept loop looks at its stop flag: stop() waits up to this long, twice a test
POLL_INTERVAL = 0.02


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; `headers` keys are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Part:
    """One field of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


def parse_multipart(body: bytes, content_type: str) -> dict[str, Part]:
    """Parse multipart/form-data with the email package (the `cgi` module is deprecated)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.message_from_bytes(head + body)
    parts: dict[str, Part] = {}
    if not message.is_multipart():
        return parts
    for item in message.get_payload():
        assert isinstance(item, Message)
        name = item.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = item.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        parts[name] = Part(name, item.get_filename(), item.get_content_type(), data)
    return parts


class FakeHandler(BaseHTTPRequestHandler):
    """Reads and records the request, then lets the fake answer it through the send_* helpers."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection ends after this; stop() cuts them anyway
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        request = self._read_request()
        fake = self.server.fake
        fake.record(request)
        fake.handle(self, request)

    def _read_request(self) -> RecordedRequest:
        split = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = self._read_body(headers)
        parsed: Any = None
        if body and "json" in headers.get("content-type", ""):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        return RecordedRequest(self.command, split.path, query, headers, body, parsed)

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length = int(headers.get("content-length", "0") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def send_bytes(
        self, body: bytes, content_type: str, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj, ensure_ascii=False).encode()
        self.send_bytes(body, JSON_TYPE, status, headers)

    def start_chunked(
        self, content_type: str, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def client_gone(self) -> bool:
        """True when the client has hung up (its process died, say) while this request was held."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def abort(self) -> None:
        """Drop the connection now, without finishing the response (as a crashed upstream would)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log."""


class _Server(ThreadingHTTPServer):
    """Tracks its connections and handler threads so that stop() can cut and join them."""

    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs when 100 simulated users connect at once

    def __init__(self, fake: FakeServer) -> None:
        super().__init__((HOST, 0), FakeHandler)
        self.fake = fake
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._handler_threads: list[threading.Thread] = []
        #: connections accepted so far (a client that pools its connections opens one for many requests)
        self.accepted = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._lock:
            self.accepted += 1
            self._connections.add(request)
            self._handler_threads = [t for t in self._handler_threads if t.is_alive()] + [thread]
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (the simulator's timeouts do that on purpose) is not an error."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def cut_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
            threads = list(self._handler_threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(_JOIN_TIMEOUT)


class FakeServer:
    """Base of the fakes: subclasses implement `handle(handler, request)`."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._records_lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: set by release(): held streams go on (the test, not the clock, sets a slow answer's pace)
        self.released = threading.Event()
        #: set when a stream reaches its hold (the test then knows how much was sent)
        self.holding = threading.Event()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{HOST}:{self._server.server_address[1]}"

    @property
    def connections_accepted(self) -> int:
        return self._server.accepted if self._server is not None else 0

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self.stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake sleeping/hanging handlers, cut open connections, join every thread."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.cut_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def release(self) -> None:
        """Let the held streams go on (and every later one pass its hold)."""
        self.released.set()

    def wait_holding(self, timeout: float = 30.0) -> None:
        """Until a stream has reached its hold (a hang guard, not a timing assertion)."""
        if not self.holding.wait(timeout):
            raise AssertionError("no stream reached its hold")

    def hold(self, gone: Callable[[], bool] = lambda: False) -> bool:
        """In a handler: wait for `release()`; False (stop at once) when the fake is being stopped or the
        client has gone (`gone`)."""
        self.holding.set()
        while not self.released.wait(0.05):
            if self.stopping.is_set() or gone():
                return False
        return True

    def pause(self, seconds: float) -> bool:
        """Sleep in a handler; returns False (stop at once) when the fake is being stopped."""
        if seconds <= 0:
            return not self.stopping.is_set()
        return not self.stopping.wait(seconds)

    def record(self, request: RecordedRequest) -> None:
        with self._records_lock:
            self._records.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._records_lock:
            return list(self._records)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    def clear_requests(self) -> None:
        with self._records_lock:
            self._records.clear()

    def handle(self, handler: FakeHandler, request: RecordedRequest) -> None:
        handler.send_json({"error": f"no route for {request.method} {request.path}"}, status=404)
