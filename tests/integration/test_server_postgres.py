"""The account server on a PostgreSQL registry: 8 clients applying to one workspace at once through its
HTTP API, round after round, exactly one winning each round, with the history and the audit log holding
exactly the winners."""

from __future__ import annotations

import threading

import pytest
from account_server import ADMIN, ADMIN_PASSWORD, start_account_server
from store_backends import definitions, entity, source, view

from featureplane.definitions.specs import KINDS, to_dict

pytestmark = pytest.mark.integration

CLIENTS = 8
ROUNDS = 3


@pytest.fixture
def account(tmp_path, postgres_dsn):
    server = start_account_server(
        tmp_path / "server", {"registry": {"type": "postgres", "dsn": postgres_dsn}}
    )
    yield server
    server.stop()


def payload(view_name: str) -> dict:
    desired = definitions(entity(), source(), view(view_name))
    return {kind: [to_dict(s) for s in desired.by_kind(kind).values()] for kind in KINDS}


def test_concurrent_applies_from_8_clients_through_the_server_one_wins_each_round(account):
    token = account.login(ADMIN, ADMIN_PASSWORD)
    status, created, _ = account.call("POST", "/api/v1/workspaces", {"name": "prod", "live": False}, token)
    assert status == 201, created
    for round_number in range(1, ROUNDS + 1):
        base = round_number - 1
        outcomes: list[tuple[int, object]] = []
        lock = threading.Lock()
        barrier = threading.Barrier(CLIENTS)

        def apply(
            index: int, base=base, round_number=round_number, outcomes=outcomes, lock=lock, barrier=barrier
        ):
            body = {"definitions": payload(f"r{round_number}_c{index}"), "base_version": base}
            barrier.wait(timeout=60)
            status, answer, _ = account.call("POST", "/api/v1/workspaces/prod/apply", body, token)
            with lock:
                outcomes.append((status, answer))

        threads = [threading.Thread(target=apply, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        statuses = sorted(status for status, _ in outcomes)
        assert statuses == [200] + [409] * (CLIENTS - 1), outcomes
        (won,) = [answer for status, answer in outcomes if status == 200]
        assert won["version"] == round_number
        assert all("changed since" in answer["detail"] for status, answer in outcomes if status == 409)

    status, history, _ = account.call("GET", "/api/v1/workspaces/prod/history", token=token)
    assert status == 200 and [h["version"] for h in history] == list(range(1, ROUNDS + 1))
    status, events, _ = account.call("GET", "/api/v1/audit?action=apply", token=token)
    assert status == 200 and sorted(e["target"] for e in events) == [
        f"version {v}" for v in range(1, ROUNDS + 1)
    ]
    assert not (account.root / ".featureplane" / "registry.db").exists()  # all of it is in PostgreSQL
