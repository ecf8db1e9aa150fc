"""The lookup server's HTTP/1.1 handling, over raw sockets to a real ``featureplane serve``: persistent
connections and when they close, HTTP/1.0, HEAD, chunked bodies, ``Expect: 100-continue`` and the
limits on the request line."""

from __future__ import annotations

import json
import socket

import pytest
from helpers import serving_repo

pytestmark = pytest.mark.integration

GET = "/api/v1/feature-service/get-features"
BODY = json.dumps(
    {"params": {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"user_id": "u1"}}}
).encode()


@pytest.fixture
def server(tmp_path, lookup_server):
    return lookup_server(serving_repo(tmp_path / "repo", auth=False))


def connect(server) -> tuple[socket.socket, object]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock, sock.makefile("rb")


def read_response(reader, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    status = int(reader.readline().split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    return status, headers, b"" if head else reader.read(length)


def post(body: bytes = BODY, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    head = f"POST {GET} {version}\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def closed(sock: socket.socket, reader) -> bool:
    try:
        sock.sendall(post())
        return reader.readline() == b""
    except OSError:
        return True


def test_keep_alive_serves_many_requests_until_the_client_says_close(server):
    sock, reader = connect(server)
    with sock:
        answers = []
        for _ in range(3):  # the same request line and headers again and again
            sock.sendall(post())
            answers.append(read_response(reader))
        assert [status for status, _, _ in answers] == [200, 200, 200]
        assert len({body for _, _, body in answers}) == 1
        assert json.loads(answers[0][2])["result"]["features"][0] == 7.0
        assert "connection" not in answers[0][1] and answers[0][1]["content-type"] == "application/json"
        sock.sendall(post(extra="Connection: close\r\n"))
        status, headers, _ = read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert closed(sock, reader)


def test_http_1_0_closes_unless_asked_to_keep_alive(server):
    sock, reader = connect(server)
    with sock:
        sock.sendall(post(version="HTTP/1.0"))
        status, headers, _ = read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert closed(sock, reader)
    sock, reader = connect(server)
    with sock:
        sock.sendall(post(version="HTTP/1.0", extra="Connection: keep-alive\r\n"))
        assert read_response(reader)[0] == 200
        sock.sendall(post())
        assert read_response(reader)[0] == 200


def test_head_answers_headers_only(server):
    sock, reader = connect(server)
    with sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, _ = read_response(reader, head=True)
        assert status == 200 and int(headers["content-length"]) > 0
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # nothing was left unread
        status, _, body = read_response(reader)
        assert status == 200 and json.loads(body)["status"] == "ok"


def test_chunked_bodies_and_100_continue(server):
    sock, reader = connect(server)
    with sock:
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (BODY[:10], BODY[10:]))
        sock.sendall(
            f"POST {GET} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + chunks
            + b"0\r\n\r\n"
        )
        status, _, body = read_response(reader)
        assert status == 200 and json.loads(body)["result"]["features"][0] == 7.0
        sock.sendall(post(extra="Expect: 100-continue\r\n")[: -len(BODY)])
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n" and reader.readline() == b"\r\n"
        sock.sendall(BODY)
        assert read_response(reader)[0] == 200


def test_bad_request_lines_are_refused_in_the_api_error_shape_and_close(server):
    sock, reader = connect(server)
    with sock:
        sock.sendall(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n")
        status, headers, body = read_response(reader)
        assert (
            status == 414
            and headers["connection"] == "close"
            and "longer than" in json.loads(body)["message"]
        )
        assert closed(sock, reader)
    for line in (b"NONSENSE\r\n\r\n", b"GET / HTTP/9\r\n\r\n", b"GET  HTTP/1.1 extra\r\n\r\n"):
        sock, reader = connect(server)
        with sock:
            sock.sendall(line)
            status, headers, body = read_response(reader)
            assert status == 400 and "malformed request line" in json.loads(body)["message"], line
            assert closed(sock, reader)
