"""Local stand-ins for AWS used by the tests: dynalite (DynamoDB, from npm), kinesalite (Kinesis, from
npm: unlike moto, it closes a resharded shard and routes new records to its children), moto's server
(S3, DynamoDB, Kinesis) and a fault-injecting proxy between boto3 and dynalite. All listen on free ports of 127.0.0.1 and are
stopped by process id (servers) or shut down (the in-process proxy)."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import threading
import time
import urllib.request
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import Server, free_port

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ROOT / "tests" / "servers"
DYNALITE = SERVERS / "node_modules" / ".bin" / "dynalite"
KINESALITE = SERVERS / "node_modules" / "kinesalite"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class Process(Server):
    """A server process on 127.0.0.1:port, ready once the port accepts connections."""

    def __init__(self, args: list[str], port: int, log: Path, env: dict | None = None, cwd: Path = ROOT):
        super().__init__(args, port, {**os.environ, **(env or {})}, cwd, log)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{args[0]} exited with {self.process.returncode}:\n{log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"{args[0]} did not listen on {port}:\n{log.read_text()}") from None
                time.sleep(0.05)


def start_dynalite(log_dir: Path) -> Process:
    if not DYNALITE.exists():
        raise AssertionError(
            f"dynalite is not installed ({DYNALITE} is missing): run `make test` (it runs npm ci in tests/servers)"
        )
    port = free_port()
    return Process(
        [str(DYNALITE), "--host", "127.0.0.1", "--port", str(port), "--createTableMs", "0",
         "--deleteTableMs", "0", "--updateTableMs", "0"],
        port,
        log_dir / f"dynalite-{port}.log",
    )  # fmt: skip


def start_kinesalite(log_dir: Path) -> Process:
    if not KINESALITE.exists():
        raise AssertionError(
            f"kinesalite is not installed ({KINESALITE} is missing): run `make test` (it runs npm ci in tests/servers)"
        )
    port = free_port()
    return Process(
        ["node", str(SERVERS / "kinesalite.js"), str(port)], port, log_dir / f"kinesalite-{port}.log"
    )


def start_moto(log_dir: Path, bin_dir: Path) -> Process:
    port = free_port()
    return Process(
        [str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port, log_dir / f"moto-{port}.log"
    )


def use_dynamodb(
    config_path: Path,
    endpoint: str,
    table_prefix: str,
    *,
    snapshot: str | None = None,
    extra: str = "",
    refresh_seconds: float = 0.5,
) -> None:
    """Point a test repository's featureplane.yaml at DynamoDB (and optionally a serving snapshot)."""
    text = config_path.read_text()
    online = (
        f"online_store: {{type: dynamodb, region: us-east-1, table_prefix: {table_prefix}, "
        f"endpoint_url: '{endpoint}'{extra}}}"
    )
    text = re.sub(r"^online_store:.*$", online, text, flags=re.M)
    serving = f"serving: {{registry_refresh_seconds: {refresh_seconds}, auth: false"
    serving += f", registry_snapshot: '{snapshot}'}}" if snapshot else "}"
    text = re.sub(r"^serving:.*$", serving, text, flags=re.M)
    config_path.write_text(text)


# -- fault injection -------------------------------------------------------------------------------

THROTTLES = [
    ("com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "throughput exceeded"),
    ("com.amazon.coral.availability#ThrottlingException", "rate exceeded"),
    ("com.amazonaws.dynamodb.v20120810#RequestLimitExceeded", "request limit exceeded"),
]


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of a DynamoDB endpoint that misbehaves the way DynamoDB does
    under load: it answers some calls with throttling errors (each of the three codes), and forwards
    only part of each BatchWriteItem / BatchGetItem, reporting the rest as UnprocessedItems /
    UnprocessedKeys. ``counts`` tells what it injected and ``calls`` what it saw, per operation."""

    def __init__(
        self, upstream: str, *, throttle: float = 0.0, unprocessed: float = 0.0, seed: int = 7
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.throttle = throttle
        self.unprocessed = unprocessed
        self.throttled_operations = ("BatchWriteItem", "BatchGetItem", "PutItem", "GetItem")
        self.random = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, payload = proxy.handle(dict(self.headers.items()), body)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _chance(self, p: float) -> bool:
        with self._lock:
            return self.random.random() < p

    def _split(self, items: list) -> tuple[list, list]:
        """Keep a random part of ``items`` (at least one when there are several), hold back the rest."""
        with self._lock:
            held = [i for i in items if self.random.random() < 0.5]
        if len(held) == len(items) and len(items) > 1:
            held = held[1:]
        return [i for i in items if i not in held], held

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        operation = headers.get("X-Amz-Target", "").split(".")[-1]
        with self._lock:
            self.calls[operation] += 1
        if operation in self.throttled_operations and self._chance(self.throttle):
            with self._lock:
                code, message = THROTTLES[self.counts["throttled"] % len(THROTTLES)]
                self.counts["throttled"] += 1
                self.counts[code.split("#")[1]] += 1
            payload = json.dumps({"__type": code, "message": message}).encode()
            return 400, self._json_headers(payload), payload
        request = json.loads(body) if body else {}
        held: dict = {}
        if operation == "BatchWriteItem" and self._chance(self.unprocessed):
            for table, writes in request["RequestItems"].items():
                kept, back = self._split(writes)
                if back:
                    held[table] = back
                    request["RequestItems"][table] = kept
            request["RequestItems"] = {t: w for t, w in request["RequestItems"].items() if w}
        elif operation == "BatchGetItem" and self._chance(self.unprocessed):
            for table, spec in request["RequestItems"].items():
                kept, back = self._split(spec["Keys"])
                if back:
                    held[table] = {**spec, "Keys": back}
                    spec["Keys"] = kept
            request["RequestItems"] = {t: s for t, s in request["RequestItems"].items() if s["Keys"]}
        if held:
            with self._lock:
                self.counts[f"unprocessed_{operation}"] += sum(
                    len(v) if isinstance(v, list) else len(v["Keys"]) for v in held.values()
                )
        if held and not request["RequestItems"]:
            answer: dict = {"Responses": {}} if operation == "BatchGetItem" else {}
            status = 200
        else:
            status, answer = self._forward(headers, json.dumps(request).encode() if held else body)
        if held and status == 200:
            if operation == "BatchWriteItem":
                answer["UnprocessedItems"] = {**answer.get("UnprocessedItems", {}), **held}
            else:
                answer["UnprocessedKeys"] = {**answer.get("UnprocessedKeys", {}), **held}
        payload = json.dumps(answer).encode()
        return status, self._json_headers(payload), payload

    def _forward(self, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(self.upstream + "/", data=body, headers=forwarded, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    @staticmethod
    def _json_headers(payload: bytes) -> dict[str, str]:
        # boto3 checks DynamoDB responses against this checksum.
        return {
            "Content-Type": "application/x-amz-json-1.0",
            "x-amz-crc32": str(zlib.crc32(payload) & 0xFFFFFFFF),
        }

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
