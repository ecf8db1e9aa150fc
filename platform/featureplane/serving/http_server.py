"""``featureplane serve``: the lookup API over HTTP/1.1, standard library only.

A thread per connection (``socketserver.ThreadingTCPServer``) with persistent connections, and a
small HTTP/1.1 reader of its own: ``http.server`` parses every header block with the email package
and answers unknown methods with 501, which costs latency and breaks the no-5xx-for-bad-input rule.
Each response goes out in one ``send`` with ``TCP_NODELAY``. Limits on the request line, headers and
body answer 400/413/431 in the API's JSON error shape and close the connection.
"""

from __future__ import annotations

import gc
import logging
import socket
import socketserver
import sys
import threading
import time
from email.utils import formatdate
from http import HTTPStatus

from featureplane.serving.protocol import JSON_HEADERS, Request, Response, error_response
from featureplane.serving.service import LookupService

log = logging.getLogger("featureplane.serving")

MAX_LINE = 16 * 1024
MAX_HEADERS = 100
IDLE_SECONDS = 75.0


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
    """Connections idle for ``idle_seconds`` are closed by a reaper thread rather than by a socket
    timeout: a timeout puts every socket in non-blocking mode with a poll() before each read and
    write, which doubles the cost of the HTTP layer."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self, address: tuple[str, int], service: LookupService, idle_seconds: float = IDLE_SECONDS
    ) -> None:
        self.service = service
        self.clock = _Clock()
        self.idle_seconds = idle_seconds
        self.connections: dict[
            socket.socket, float
        ] = {}  # open connection -> when it last finished a request
        self._connections_lock = threading.Lock()
        self._stopped = threading.Event()
        super().__init__(address, LookupHandler)
        threading.Thread(target=self._reap, name="featureplane-idle-connections", daemon=True).start()

    def opened(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self.connections[connection] = time.monotonic()

    def closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self.connections.pop(connection, None)

    def server_close(self) -> None:
        self._stopped.set()
        super().server_close()

    def _reap(self) -> None:
        while not self._stopped.wait(min(5.0, self.idle_seconds / 2)):
            cutoff = time.monotonic() - self.idle_seconds
            with self._connections_lock:
                idle = [c for c, last in self.connections.items() if last < cutoff]
            for connection in idle:
                try:
                    connection.shutdown(socket.SHUT_RDWR)  # its handler's read returns and it exits
                except OSError:
                    pass


class LookupHandler(socketserver.StreamRequestHandler):
    server: LookupHTTPServer
    rbufsize = 64 * 1024
    wbufsize = 0

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.opened(self.connection)

    def handle(self) -> None:
        connections = self.server.connections
        try:
            while self._handle_one():
                connections[self.connection] = time.monotonic()
        except (OSError, ValueError):  # the client went away, or the reaper closed an idle connection
            pass
        finally:
            self.server.closed(self.connection)

    def _handle_one(self) -> bool:
        """Read one request and answer it; whether the connection stays open."""
        line = self.rfile.readline(MAX_LINE + 1)
        while line in (b"\r\n", b"\n"):  # tolerated between requests
            line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return False
        try:
            method, target, version, headers = self._head(line)
            connection = headers.get("connection")
            keep_alive = version != "HTTP/1.0" if connection is None else _keep_alive(version, connection)
            body = self._body(headers)
        except _Reject as exc:
            self._send(error_response(exc.status, exc.message), keep_alive=False)
            return False
        request = Request(method, target, headers, body)
        self._send(self.server.service.handle(request), keep_alive, head=method == "HEAD")
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


def make_server(
    service: LookupService, host: str = "127.0.0.1", port: int = 8080, idle_seconds: float = IDLE_SECONDS
) -> LookupHTTPServer:
    """A bound server (``port=0`` picks a free one); run it with ``serve_forever()``."""
    return LookupHTTPServer((host, port), service, idle_seconds)


def serve(service: LookupService, host: str = "127.0.0.1", port: int = 8080) -> None:
    server = make_server(service, host, port)
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
