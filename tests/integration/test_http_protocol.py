"""The lookup server's HTTP/1.1 handling, over raw sockets to a real ``featureplane serve``: persistent
connections and when they close, HTTP/1.0, HEAD, chunked bodies, ``Expect: 100-continue``, the
limits on the request line, and a flood of slow clients bounded and cut."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

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


# -- a flood of slow clients --------------------------------------------------------------------


def _threads_and_fds(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def _wait_for(condition, what: str, seconds: float = 90) -> None:
    """Poll ``condition`` until it holds; a generous deadline, as the machine may be busy."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_flood_of_half_open_connections_is_bounded_and_cut(tmp_path, lookup_server):
    """Clients that connect and send nothing, half a request line, headers without their end, or a
    body shorter than its Content-Length, and then wait: the server holds at most max_connections
    of them (threads and file descriptors), answers the rest 503 at once, cuts the ones it holds
    after the request timeout, and is back to its baseline while the clients still wait."""
    limit = 40
    repo = serving_repo(
        tmp_path / "repo",
        auth=False,
        max_connections=limit,
        request_timeout_seconds=1,
        idle_timeout_seconds=2,
    )
    server = lookup_server(repo)
    pid = server.process.pid
    sock, reader = connect(server)
    with sock:  # warm up: the first request loads the registry snapshot and opens the online store
        sock.sendall(post())
        assert read_response(reader)[0] == 200
    time.sleep(0.5)
    base_threads, base_fds = _threads_and_fds(pid)
    peak = [base_threads, base_fds]
    flooding = threading.Event()

    def sample() -> None:  # the most threads and descriptors the server holds while the flood lasts
        while not flooding.is_set():
            threads, fds = _threads_and_fds(pid)
            peak[:] = max(peak[0], threads), max(peak[1], fds)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    partial = [
        b"",
        b"POST /api/v1/feature-service/get-fea",
        f"POST {GET} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le".encode(),
        post()[:-10],
    ]
    clients: list[socket.socket] = []
    refused = 0
    try:
        for i in range(400):
            client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            clients.append(client)
            if partial[i % 4]:
                client.sendall(partial[i % 4])
        flooding.set()
        sampler.join()
        assert peak[0] <= base_threads + limit + 1, (base_threads, peak)
        assert peak[1] <= base_fds + limit + 1, (base_fds, peak)
        for client in clients[limit + 20 :]:  # well past the limit: refused at once, not left waiting
            client.settimeout(30)
            answer = client.recv(65536)
            if answer.startswith(b"HTTP/1.1 503 "):
                refused += 1
                assert b"serving.max_connections" in answer and b"Retry-After: 1" in answer
        assert refused >= len(clients) - limit - 40, refused

        # The held connections are cut after the request timeout: threads and descriptors go back
        # to the baseline although every client still holds its socket open.
        _wait_for(
            lambda: _threads_and_fds(pid) <= (base_threads, base_fds + 1),
            f"threads and fds stayed above ({base_threads}, {base_fds}): {_threads_and_fds(pid)}",
        )
        sock, reader = connect(server)
        with sock:
            sock.sendall(post())
            assert read_response(reader)[0] == 200
            time.sleep(0.1)
            # a kept-alive connection that sends nothing more is closed after the idle timeout
            _wait_for(lambda: _closed_by_peer(sock), "the idle connection was not closed")
    finally:
        for client in clients:
            client.close()
    assert "Traceback" not in server.log.read_text()


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(0.1)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True
