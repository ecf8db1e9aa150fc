"""The real ``featureplane serve`` process on 127.0.0.1: API keys over HTTP (revoked from another
process), and ingest under SIGKILL: a server killed right after acknowledging loses nothing, online or
offline, and a request it never acknowledged ends up in both stores or in neither once a server starts
again."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import Server, free_port, post_json
from helpers import click, serving_repo

from featureplane.ingest.log import IngestLog, ingest_log_root
from featureplane.retrieval.workspace import get_workspace

pytestmark = pytest.mark.integration

GET = "/api/v1/feature-service/get-features"


@pytest.fixture
def repo(tmp_path):
    return serving_repo(tmp_path / "repo", auth=True, registry_refresh_seconds=0.5)


def new_key(repo, role: str, workspace: str = "prod") -> str:
    return repo.cli("api-key", "create", "-w", workspace, "--role", role, "--quiet").stdout.strip()


def lookup(server, key: str | None, workspace: str = "prod") -> tuple[int, dict]:
    headers = {"Authorization": f"Tecton-key {key}"} if key else {}
    payload = {
        "params": {"workspaceName": workspace, "featureServiceName": "svc", "joinKeyMap": {"user_id": "u1"}}
    }
    return post_json(server.url + GET, payload, headers)


def test_keys_over_http_and_revocation_from_another_process(repo, lookup_server):
    consumer = new_key(repo, "consumer")
    server = lookup_server(repo)
    assert lookup(server, None)[0] == 401
    assert lookup(server, None, workspace="nope")[0] == 401
    assert lookup(server, "fpk_000000000000_" + "x" * 43)[0] == 401
    status, body = lookup(server, consumer)
    assert status == 200 and body["result"]["features"][0] == 7.0
    assert lookup(server, consumer, workspace="staging")[0] == 403
    status, body = post_json(
        server.url + "/api/v1/ingest",
        {"workspaceName": "prod", "records": {"clicks": []}},
        {"Authorization": f"Bearer {consumer}"},
    )
    assert status == 403 and "may not call ingest" in body["message"]
    repo.cli("api-key", "revoke", consumer.split("_")[1])
    revoked = time.monotonic()
    while lookup(server, consumer)[0] != 401:
        assert time.monotonic() - revoked < 3, (
            "the revocation did not reach the server within its refresh interval"
        )
        time.sleep(0.1)


class Pusher(threading.Thread):
    """Sends ingest requests on one keep-alive connection, remembering every acknowledged record."""

    def __init__(self, port: int, key: str, name: str, acknowledged: list, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.key, self.label = port, key, name
        self.acknowledged, self.stop = acknowledged, stop
        self.failures: list[bytes] = []
        self.sent: list[list[dict]] = []  # every request's records, acknowledged or not

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        i = 0
        while not self.stop.is_set():
            records = [
                click(f"{self.label}-{i}-{j}", f"2024-01-0{1 + j}T00:00:{i % 60:02d}Z", i + j / 10)
                for j in range(3)
            ]
            body = json.dumps({"workspaceName": "prod", "records": {"clicks": records}})
            self.sent.append([r["record"] for r in records])
            try:
                connection.request(
                    "POST", "/api/v1/ingest", body, {"Authorization": f"Tecton-key {self.key}"}
                )
                response = connection.getresponse()
                payload = response.read()
            except OSError:
                return  # the server died: this request was never acknowledged
            if response.status != 200:
                self.failures.append(payload)
                return
            self.acknowledged.extend(r["record"] for r in records)
            i += 1


def test_a_server_killed_right_after_acknowledging_loses_nothing(repo, lookup_server):
    key = new_key(repo, "ingest")
    server = lookup_server(repo)
    acknowledged: list[dict] = []
    stop = threading.Event()
    pushers = [Pusher(server.port, key, f"p{n}", acknowledged, stop) for n in range(4)]
    for pusher in pushers:
        pusher.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(server.process.pid, signal.SIGKILL)  # mid-stream: other requests are in flight
    server.process.wait()
    stop.set()
    for pusher in pushers:
        pusher.join(timeout=15)
    assert [p.failures for p in pushers] == [[]] * len(pushers)
    assert len(acknowledged) >= 300
    expected = {r["user_id"]: r for r in acknowledged}

    ws = get_workspace("prod", config=repo.config_path)
    table = ws.get_feature_view("scores")
    # Online: every acknowledged record is there, with its value.
    with repo.runtime() as runtime:
        table_id = ws.state.table_id("scores")
        rows = runtime.online_store.read([(table_id, (user,)) for user in expected])
    missing = [user for user, row in zip(expected, rows, strict=True) if row is None]
    assert not missing, f"{len(missing)} acknowledged record(s) missing online, e.g. {missing[:3]}"
    assert all(row.values[0] == expected[user]["score"] for user, row in zip(expected, rows, strict=True))
    # Offline (training data): every acknowledged record, folded from the dead server's log.
    offline = table.get_features_in_range("2024-01-01", "2024-02-01")
    got = dict(zip(offline["user_id"], offline["score"], strict=True))
    assert {u: got.get(u) for u in expected} == {u: r["score"] for u, r in expected.items()}
    # The dead server's segment is sealed (its lock died with it) but not marked as online: a request
    # it was writing may be in the log only. It stays until a lookup service replays it.
    assert IngestLog(ingest_log_root(repo.config())).segments("prod") != []
    lookup_server(repo)
    sent = [records for pusher in pushers for records in pusher.sent]
    applied = each_request_in_both_stores_or_neither(repo, sent)
    assert applied >= len(acknowledged) // 3
    table.get_features_in_range("2024-01-01", "2024-02-01")  # a fold: the replayed segment goes
    assert IngestLog(ingest_log_root(repo.config())).segments("prod") == []


def each_request_in_both_stores_or_neither(repo, requests: list[list[dict]]) -> int:
    """Check that every request's records are all in the online and the offline store, or none are
    in either; return how many requests were applied."""
    users = [record["user_id"] for records in requests for record in records]
    ws = get_workspace("prod", config=repo.config_path)
    offline = ws.get_feature_view("scores").get_features_in_range("2024-01-01", "2024-02-01")
    offline_users = set(offline["user_id"])
    with repo.runtime() as runtime:
        rows = runtime.online_store.read([(ws.state.table_id("scores"), (user,)) for user in users])
    online_users = {user for user, row in zip(users, rows, strict=True) if row is not None}
    applied, partial = 0, []
    for records in requests:
        places = {(r["user_id"] in online_users, r["user_id"] in offline_users) for r in records}
        if places == {(True, True)}:
            applied += 1
        elif places != {(False, False)}:
            partial.append((records[0]["user_id"], sorted(places)))
    assert not partial, f"{len(partial)} request(s) applied to one store only, e.g. {partial[:3]}"
    return applied


def test_requests_killed_between_the_log_and_the_online_store_are_applied_on_restart(repo, lookup_server):
    """SIGKILL while several requests are in the ingest log and not yet online (the server holds them
    there): their records are offline only, a fold does not remove their segment, and the next
    server to start replays them online before its first lookup."""
    key = new_key(repo, "ingest")
    port = free_port()
    held = Path(repo.root) / "held"
    runner = Path(__file__).parent / "ingest_hold_runner.py"
    server = Server(
        [sys.executable, str(runner), str(repo.config_path), str(port), "20", str(held)],
        port,
        repo.env,
        repo.root,
        Path(repo.root) / "runner.log",
    )
    try:
        server.wait_ready()
        acknowledged: list[dict] = []
        stop = threading.Event()
        pushers = [Pusher(port, key, f"h{n}", acknowledged, stop) for n in range(4)]
        for pusher in pushers:
            pusher.start()
        deadline = time.monotonic() + 60
        while not (held.exists() and len(held.read_text().splitlines()) >= 4):
            assert time.monotonic() < deadline, "the requests were not held: " + server.log.read_text()
            time.sleep(0.01)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        stop.set()
        for pusher in pushers:
            pusher.join(timeout=15)
    finally:
        server.stop()
    assert server.process.returncode == -signal.SIGKILL
    assert len(acknowledged) == 20 * 3
    sent = [records for pusher in pushers for records in pusher.sent]
    unacknowledged = [r for records in sent for r in records if r not in acknowledged]
    assert len(unacknowledged) == 4 * 3  # the four held requests

    ws = get_workspace("prod", config=repo.config_path)
    offline = ws.get_feature_view("scores").get_features_in_range("2024-01-01", "2024-02-01")
    assert {r["user_id"] for r in unacknowledged} <= set(offline["user_id"])  # in the log: offline
    with repo.runtime() as runtime:
        table_id = ws.state.table_id("scores")
        rows = runtime.online_store.read([(table_id, (r["user_id"],)) for r in unacknowledged])
    assert rows == [None] * len(unacknowledged)  # ... and not online, yet
    assert IngestLog(ingest_log_root(repo.config())).segments("prod") != []  # the fold kept it

    lookup_server(repo)  # a plain server: it replays the log when it starts
    assert each_request_in_both_stores_or_neither(repo, sent) == len(sent)
    with repo.runtime() as runtime:
        rows = runtime.online_store.read([(table_id, (r["user_id"],)) for r in unacknowledged])
    assert [row.values[0] for row in rows] == [r["score"] for r in unacknowledged]


def test_metrics_over_http(repo, lookup_server):
    server = lookup_server(repo)
    lookup(server, new_key(repo, "consumer"))
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    text = response.read().decode()
    assert response.status == 200
    assert (
        'featureplane_requests_total{endpoint="get-features",workspace="prod",service="svc",status="200"} 1'
        in text
    )


def test_health_is_not_ready_until_a_registry_snapshot_is_loaded(tmp_path, lookup_server):
    """A load balancer must not route to a server that can serve nothing: 503 with the reason while the
    registry cannot be read or holds no live workspace, 200 once a live workspace is loaded."""
    import urllib.error
    import urllib.request

    from conftest import Repo, write_config

    def health(server) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    (tmp_path / "afile").write_text("")
    (tmp_path / "broken").mkdir()
    broken = Repo(tmp_path / "broken", write_config(tmp_path / "broken"))
    text = broken.config_path.read_text().replace(
        ".featureplane/registry.db", str(tmp_path / "afile" / "r.db")
    )
    broken.config_path.write_text(text)
    status, body = health(lookup_server(broken))
    assert status == 503 and body["status"] == "unavailable"
    assert "cannot read the registry" in body["reason"] and "afile" in body["reason"]

    from helpers import AMOUNTS_SERVICE, events_repo

    fresh = events_repo(tmp_path / "fresh", AMOUNTS_SERVICE)
    server = lookup_server(fresh)
    assert health(server) == (
        503,
        {"status": "unavailable", "reason": "the registry has no live workspace yet: apply to one"},
    )
    fresh.cli("workspace", "create", "prod", "--live")
    fresh.cli("apply", "--yes")
    deadline = time.monotonic() + 10
    while health(server)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert health(server) == (200, {"status": "ok", "workspaces": ["prod"]})
