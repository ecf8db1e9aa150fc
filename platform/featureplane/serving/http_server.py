"""``featureplane serve``: the lookup API over HTTP/1.1, standard library only.

A thread per connection (``socketserver.ThreadingTCPServer``) with persistent connections, and a
small HTTP/1.1 reader of its own: ``http.server`` parses every header block with the email package
and answers unknown methods with 501, which costs latency and breaks the no-5xx-for-bad-input rule.
Each response goes out in one ``send`` with ``TCP_NODELAY``. Limits on the request line, headers and
body answer 400/413/431 in the API's JSON error shape and close the connection.

What a flood of clients can hold is bounded (``ServerLimits``): at most ``max_connections`` open
connections, so as many handler threads and file descriptors; one more is answered 503 and closed at
once. A connection must send a whole request within ``request_timeout`` of opening it or of sending
its request line, and may wait ``idle_timeout`` between requests; past its deadline, the reaper
closes it and its thread ends.
"""

from __future__ import annotations

import gc
import logging
import math
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from featureplane.serving.protocol import JSON_HEADERS, Request, Response, error_response
from featureplane.serving.service import LookupService

log = logging.getLogger("featureplane.serving")

MAX_LINE = 16 * 1024
MAX_HEADERS = 100
_CUT = math.inf  # the reaper closed the connection
_BUSY = sys.float_info.max  # the service is answering: no deadline


@dataclass(frozen=True)
class ServerLimits:
    """What clients may hold: ``serving.max_connections``, ``serving.request_timeout_seconds`` and
    ``serving.idle_timeout_seconds`` in featureplane.yaml."""

    max_connections: int = 512
    request_timeout: float = 10.0
    idle_timeout: float = 75.0

    @classmethod
    def from_settings(cls, serving: Any) -> ServerLimits:
        return cls(
            max_connections=serving.max_connections,
            request_timeout=serving.request_timeout_seconds,
            idle_timeout=serving.idle_timeout_seconds,
        )


class _Reject(Exception):
    """A request that cannot be read: answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Clock:
    """The ``Date`` header line, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._line = b""

    def date_line(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second, self._line = second, b"Date: %s\r\n" % formatdate(second, usegmt=True).encode()
        return self._line


class LookupHTTPServer(socketserver.ThreadingTCPServer):
    """Each open connection has a deadline (``deadlines``), moved by its handler as a request goes
    through; a reaper thread closes connections past theirs. A socket timeout would do the same per
    connection but puts every socket in non-blocking mode with a poll() before each read and write,
    which doubles the cost of the HTTP layer."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self, address: tuple[str, int], service: LookupService, limits: ServerLimits | None = None
    ) -> None:
        self.service = service
        self.clock = _Clock()
        self.limits = limits or ServerLimits()
        self.deadlines: dict[socket.socket, float] = {}  # open connection -> when it is cut
        self._connections_lock = threading.Lock()
        self._stopped = threading.Event()
        self._full = error_response(
            503,
            f"the server has {self.limits.max_connections} open connections, its limit "
            "(serving.max_connections); retry",
            {"Retry-After": "1"},
        )
        super().__init__(address, LookupHandler)
        threading.Thread(target=self._reap, name="featureplane-connection-deadlines", daemon=True).start()

    @property
    def connections(self) -> int:
        return len(self.deadlines)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a handler thread for the connection, or refuse it when ``max_connections`` are open."""
        with self._connections_lock:
            full = len(self.deadlines) >= self.limits.max_connections
            if not full:
                self.deadlines[request] = time.monotonic() + self.limits.request_timeout
        if full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread could be started: the connection is dropped
            self._closed(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed(request)

    def _closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self.deadlines.pop(connection, None)

    def _refuse(self, connection: socket.socket) -> None:
        """Answer 503 without waiting for the client (it may send nothing), and close."""
        response = self._full
        head = "".join(f"{k}: {v}\r\n" for k, v in response.headers.items())
        raw = (
            f"HTTP/1.1 503 Service Unavailable\r\n{head}Content-Length: {len(response.body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1") + response.body
        try:
            connection.setblocking(False)
            connection.send(raw)
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            connection.close()

    def server_close(self) -> None:
        self._stopped.set()
        super().server_close()

    def _reap(self) -> None:
        shortest = min(self.limits.request_timeout, self.limits.idle_timeout)
        while not self._stopped.wait(min(1.0, shortest / 4)):
            now = time.monotonic()
            with self._connections_lock:
                late = [c for c, deadline in self.deadlines.items() if deadline < now]
                for connection in late:  # not again until its handler has ended
                    self.deadlines[connection] = _CUT
            for connection in late:
                try:
                    connection.shutdown(socket.SHUT_RDWR)  # its handler's read or write returns; it exits
                except OSError:
                    pass


class LookupHandler(socketserver.StreamRequestHandler):
    server: LookupHTTPServer
    rbufsize = 64 * 1024
    wbufsize = 0

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        try:
            while self._handle_one():
                pass
        except (OSError, ValueError):  # the client went away, or the reaper closed the connection
            pass

    def _handle_one(self) -> bool:
        """Read one request and answer it; whether the connection stays open. Moves the connection's
        deadline: the request's rest must follow its request line within the request timeout, no
        deadline while the service answers, the request timeout again to send the answer, then the
        idle timeout for the next request."""
        deadlines, connection, limits = self.server.deadlines, self.connection, self.server.limits
        line = self.rfile.readline(MAX_LINE + 1)
        while line in (b"\r\n", b"\n"):  # tolerated between requests
            line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return False
        if deadlines.get(connection) == _CUT:  # whatever is left of a cut connection is not read
            return False
        deadlines[connection] = time.monotonic() + limits.request_timeout
        try:
            method, target, version, headers = self._head(line)
            keep = headers.get("connection")
            keep_alive = version != "HTTP/1.0" if keep is None else _keep_alive(version, keep)
            body = self._body(headers)
        except _Reject as exc:
            self._send(error_response(exc.status, exc.message), keep_alive=False)
            return False
        if deadlines.get(connection) == _CUT:
            return False
        deadlines[connection] = _BUSY
        response = self.server.service.handle(Request(method, target, headers, body))
        deadlines[connection] = time.monotonic() + limits.request_timeout
        self._send(response, keep_alive, head=method == "HEAD")
        deadlines[connection] = time.monotonic() + limits.idle_timeout
        return keep_alive

    def _head(self, line: bytes) -> tuple[str, str, str, dict[str, str]]:
        parsed_line = _REQUEST_LINES.get(line)
        if parsed_line is None:
            parsed_line = _request_line(line)
        method, target, version = parsed_line
        headers: dict[str, str] = {}
        readline = self.rfile.readline
        known = _HEADER_LINES
        while True:
            raw = readline(MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            if len(headers) >= MAX_HEADERS:
                raise _Reject(431, "request headers are too large")
            parsed = known.get(raw)
            if parsed is None:
                parsed = _header_line(raw)
            name, value = parsed
            if name == "content-length" and headers.get(name, value) != value:
                raise _Reject(400, "conflicting Content-Length headers")
            headers[name] = value
        return method, target, version, headers

    def _body(self, headers: dict[str, str]) -> bytes:
        limit = self.server.service.max_body_bytes
        expect = headers.get("expect")
        if expect is not None and expect.lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        encoding = headers.get("transfer-encoding")
        if encoding:
            encoding = encoding.lower()
            if encoding != "chunked" or "content-length" in headers:
                raise _Reject(400, f"unsupported Transfer-Encoding {encoding!r}: send a Content-Length")
            return self._chunked(limit)
        text = headers.get("content-length")
        if text is None:
            return b""
        if not text.isdigit():
            raise _Reject(400, "Content-Length must be a non-negative integer")
        length = int(text)
        if length > limit:
            raise _Reject(413, f"request body is {length} bytes; the limit is {limit}")
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise _Reject(400, "the request body is shorter than its Content-Length")
        return body

    def _chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            try:
                length = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Reject(400, "malformed chunk size") from None
            if length < 0:
                raise _Reject(400, "malformed chunk size")
            if length == 0:
                while self.rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass  # trailers are ignored
                return b"".join(chunks)
            size += length
            if size > limit:
                raise _Reject(413, f"request body is over the limit of {limit} bytes")
            chunk = self.rfile.read(length)
            if len(chunk) != length or self.rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n"):
                raise _Reject(400, "truncated chunked body")
            chunks.append(chunk)

    def _send(self, response: Response, keep_alive: bool, head: bool = False) -> None:
        status = response.status
        if response.headers is JSON_HEADERS or response.headers == JSON_HEADERS:
            fields = _JSON_FIELDS
        else:
            fields = "".join(f"{k}: {v}\r\n" for k, v in response.headers.items()).encode("latin-1")
        parts = [
            _status_line(status),
            fields,
            b"Content-Length: %d\r\n" % len(response.body),
            self.server.clock.date_line(),
            b"Server: featureplane\r\n\r\n"
            if keep_alive
            else b"Server: featureplane\r\nConnection: close\r\n\r\n",
        ]
        if not head:
            parts.append(response.body)
        self.wfile.write(b"".join(parts))


_JSON_FIELDS = "".join(f"{k}: {v}\r\n" for k, v in JSON_HEADERS.items()).encode("latin-1")
_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}


def _status_line(status: int) -> bytes:
    return _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()


# Request lines already parsed (clients repeat the same few), bounded like header lines below.
_REQUEST_LINES: dict[bytes, tuple[str, str, str]] = {}


def _request_line(line: bytes) -> tuple[str, str, str]:
    """A request line's method (upper-case), target and version, checked."""
    if len(line) > MAX_LINE:
        raise _Reject(414, f"the request line is longer than {MAX_LINE} bytes")
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _Reject(400, "malformed request line: expected 'METHOD /path HTTP/1.1'")
    parsed = parts[0].upper(), parts[1], parts[2]
    if len(line) <= _HEADER_LINE_CACHED:
        if len(_REQUEST_LINES) >= _HEADER_LINES_MAX:
            _REQUEST_LINES.clear()
        _REQUEST_LINES[line] = parsed
    return parsed


# Header lines already parsed (a client sends the same Host, Content-Type and Authorization lines again
# and again), bounded in count and line length.
_HEADER_LINES: dict[bytes, tuple[str, str]] = {}
_HEADER_LINES_MAX = 4096
_HEADER_LINE_CACHED = 512


def _header_line(raw: bytes) -> tuple[str, str]:
    """A header line's lower-case name and stripped value, checked."""
    if len(raw) > MAX_LINE:
        raise _Reject(431, "request headers are too large")
    name, colon, value = raw.decode("latin-1").partition(":")
    name = name.lower()
    if not colon or not name or not name.isprintable() or " " in name or "\t" in name:
        raise _Reject(400, f"malformed header line {raw[:80]!r}")
    parsed = name, value.strip()
    if len(raw) <= _HEADER_LINE_CACHED:
        if len(_HEADER_LINES) >= _HEADER_LINES_MAX:
            _HEADER_LINES.clear()
        _HEADER_LINES[raw] = parsed
    return parsed


def _keep_alive(version: str, connection: str) -> bool:
    if not connection:
        return version != "HTTP/1.0"
    tokens = {t.strip() for t in connection.lower().split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


REPLAY_SECONDS = 60.0


def _replay_periodically(service: LookupService, seconds: float = REPLAY_SECONDS) -> None:
    """Replay the ingest log into the online store now and then (the segments of servers that died
    while this one runs, and of requests whose online write failed): see ``featureplane.ingest.replay``."""
    while True:
        time.sleep(seconds)
        try:
            service.replay_ingest_log()
        except Exception:
            log.exception("replaying the ingest log into the online store failed")


def make_server(
    service: LookupService,
    host: str = "127.0.0.1",
    port: int = 8080,
    limits: ServerLimits | None = None,
) -> LookupHTTPServer:
    """A bound server (``port=0`` picks a free one); run it with ``serve_forever()``."""
    return LookupHTTPServer((host, port), service, limits)


def serve(
    service: LookupService, host: str = "127.0.0.1", port: int = 8080, limits: ServerLimits | None = None
) -> None:
    server = make_server(service, host, port, limits)
    threading.Thread(
        target=_replay_periodically, args=(service,), name="featureplane-ingest-replay", daemon=True
    ).start()
    # Everything loaded so far lives as long as the process: keep the garbage collector from walking
    # it again and again while requests allocate.
    gc.collect()
    gc.freeze()
    bound = server.server_address
    print(f"featureplane lookup API listening on http://{bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
