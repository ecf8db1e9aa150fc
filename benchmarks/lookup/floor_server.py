"""The lookup benchmark's floor: a bare HTTP/1.1 server doing one raw SQLite read of the requested rows.

It parses the same request body as featureplane (to learn the keys), reads the rows of both views for
all keys in one query on featureplane's online store (one row per key, a LEFT JOIN per
view, one primary-key search each, as featureplane reads), and answers their stored bytes as they are:
no auth, no registry, no validation, no metadata, no typing of values. Nothing a real lookup service
could skip less.

Usage: ``python floor_server.py ONLINE_DB PORT TABLE_ID [TABLE_ID ...]``
"""

from __future__ import annotations

import socket
import socketserver
import sqlite3
import sys
import threading

import orjson

local = threading.local()


def connection(path: str) -> sqlite3.Connection:
    con = getattr(local, "con", None)
    if con is None:
        con = local.con = sqlite3.connect(path, check_same_thread=False)
    return con


class Handler(socketserver.StreamRequestHandler):
    wbufsize = 0
    db = ""
    tables: list[str] = []
    columns = ""  # each table's stored values
    joins = ""  # a LEFT JOIN per table: one primary-key search each, one answer row per key

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        while True:
            if not self.rfile.readline():
                return
            length = 0
            while (line := self.rfile.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            params = orjson.loads(self.rfile.read(length))["params"]
            rows = params.get("requestData") or [{"joinKeyMap": params["joinKeyMap"]}]
            keys = [orjson.dumps([r["joinKeyMap"]["user_id"]]).decode() for r in rows]
            sql = (
                "WITH wanted(k) AS (VALUES "
                + ",".join(["(?)"] * len(keys))
                + ") SELECT "
                + self.columns
                + " FROM wanted "
                + self.joins
            )
            found = connection(self.db).execute(sql, [*keys, *self.tables]).fetchall()
            body = b'{"rows":[' + b",".join([blob or b"null" for row in found for blob in row]) + b"]}"
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


if __name__ == "__main__":
    Handler.db, port, Handler.tables = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    Handler.columns = ", ".join(f"o{v}.features" for v in range(len(Handler.tables)))
    Handler.joins = " ".join(
        f"LEFT JOIN online_features AS o{v} ON o{v}.table_id = ? AND o{v}.entity_key = wanted.k"
        for v in range(len(Handler.tables))
    )
    with Server(("127.0.0.1", port), Handler) as server:
        print(f"floor listening on {port}", flush=True)
        server.serve_forever()
