"""``featureplane serve``: the lookup API over HTTP/1.1, standard library only.

A thread per connection (``socketserver.ThreadingTCPServer``) with persistent connections, and a
small HTTP/1.1 reader of its own: ``http.server`` parses every header block with the email package
and answers unknown methods with 501, which costs latency and breaks the no-5xx-for-bad-input rule.
Each response goes out in one ``send`` with ``TCP_NODELAY``. Limits on the request line, headers and
body answer 400/413/431 in the API's JSON error shape and close the connection.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import sys
import time
from email.utils import formatdate
from http import HTTPStatus

from featureplane.serving.core import LookupService, Request, Response, error_response

log = logging.getLogger("featureplane.serving")

MAX_LINE = 16 * 1024
MAX_HEADERS = 100
IDLE_SECONDS = 75.0
_REASONS = {status.value: status.phrase for status in HTTPStatus}


class _Reject(Exception):
    """A request that cannot be read: answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Clock:
    """The ``Date`` header, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._text = second, formatdate(second, usegmt=True)
        return self._text


class LookupHTTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], service: LookupService) -> None:
        self.service = service
        self.clock = _Clock()
        super().__init__(address, LookupHandler)


class LookupHandler(socketserver.StreamRequestHandler):
    server: LookupHTTPServer
    timeout = IDLE_SECONDS
    rbufsize = 64 * 1024
    wbufsize = 0

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        try:
            while self._handle_one():
                pass
        except (OSError, ValueError):  # the client went away or timed out
            pass

    def _handle_one(self) -> bool:
        """Read one request and answer it; whether the connection stays open."""
        line = self.rfile.readline(MAX_LINE + 1)
        while line in (b"\r\n", b"\n"):  # tolerated between requests
            line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return False
        try:
            method, target, version, headers = self._head(line)
            keep_alive = _keep_alive(version, headers.get("connection", ""))
            body = self._body(headers)
        except _Reject as exc:
            self._send(error_response(exc.status, exc.message), keep_alive=False)
            return False
        request = Request(method, target, headers, body)
        self._send(self.server.service.handle(request), keep_alive, head=method == "HEAD")
        return keep_alive

    def _head(self, line: bytes) -> tuple[str, str, str, dict[str, str]]:
        if len(line) > MAX_LINE:
            raise _Reject(414, f"the request line is longer than {MAX_LINE} bytes")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Reject(400, "malformed request line: expected 'METHOD /path HTTP/1.1'")
        headers: dict[str, str] = {}
        while True:
            raw = self.rfile.readline(MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            if len(raw) > MAX_LINE or len(headers) >= MAX_HEADERS:
                raise _Reject(431, "request headers are too large")
            name, colon, value = raw.decode("latin-1").partition(":")
            name = name.strip().lower()
            if not colon or not name or name != name.split()[0]:
                raise _Reject(400, f"malformed header line {raw[:80]!r}")
            value = value.strip()
            if name == "content-length" and headers.get(name, value) != value:
                raise _Reject(400, "conflicting Content-Length headers")
            headers[name] = value
        return parts[0].upper(), parts[1], parts[2], headers

    def _body(self, headers: dict[str, str]) -> bytes:
        limit = self.server.service.max_body_bytes
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        encoding = headers.get("transfer-encoding", "").lower()
        if encoding:
            if encoding != "chunked" or "content-length" in headers:
                raise _Reject(400, f"unsupported Transfer-Encoding {encoding!r}: send a Content-Length")
            return self._chunked(limit)
        text = headers.get("content-length", "0")
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
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        lines += [f"{key}: {value}" for key, value in response.headers.items()]
        lines.append(f"Content-Length: {len(response.body)}")
        lines.append(f"Date: {self.server.clock.now()}")
        lines.append("Server: featureplane")
        if not keep_alive:
            lines.append("Connection: close")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head_bytes if head else head_bytes + response.body)


def _keep_alive(version: str, connection: str) -> bool:
    tokens = {t.strip() for t in connection.lower().split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def make_server(service: LookupService, host: str = "127.0.0.1", port: int = 8080) -> LookupHTTPServer:
    """A bound server (``port=0`` picks a free one); run it with ``serve_forever()``."""
    return LookupHTTPServer((host, port), service)


def serve(service: LookupService, host: str = "127.0.0.1", port: int = 8080) -> None:
    server = make_server(service, host, port)
    bound = server.server_address
    print(f"featureplane lookup API listening on http://{bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
