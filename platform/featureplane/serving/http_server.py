"""``featureplane serve``: the lookup API over HTTP/1.1 on the standard library's threading server."""

from __future__ import annotations

import logging
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from featureplane.serving.core import LookupService, Request, error_response

log = logging.getLogger("featureplane.serving")


class LookupHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: LookupService) -> None:
        self.service = service
        super().__init__(address, LookupHandler)


class LookupHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LookupHTTPServer

    def _dispatch(self, method: str) -> None:
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header else 0
            if length < 0:
                raise ValueError
        except ValueError:
            self._send(error_response(400, "Content-Length must be a non-negative integer"))
            return
        if length > self.server.service.max_body_bytes:
            self._send(
                error_response(
                    413, f"request body is {length} bytes; the limit is {self.server.service.max_body_bytes}"
                )
            )
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._send(self.server.service.handle(Request(method, self.path, headers, body)))

    def _send(self, response) -> None:
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def serve(service: LookupService, host: str = "127.0.0.1", port: int = 8080) -> None:
    server = LookupHTTPServer((host, port), service)
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bound = server.server_address
    print(f"featureplane lookup API listening on http://{bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
