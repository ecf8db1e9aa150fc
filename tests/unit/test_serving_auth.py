"""API keys and roles: created by the CLI, stored as hashes, checked by the lookup core (401 before any
workspace is revealed, 403 outside the key's workspace or role), and revocation taking effect within
the registry refresh interval."""

from __future__ import annotations

import json
import time

import pytest
from helpers import click, serving_repo

from featureplane.access import create_api_key, open_access_store
from featureplane.serving.app import create_lookup_service
from featureplane.serving.protocol import Request
from featureplane.serving.service import LookupService

GET = "/api/v1/feature-service/get-features"
BATCH = "/api/v1/feature-service/get-features-batch"
METADATA = "/api/v1/feature-service/metadata"
INGEST = "/api/v1/ingest"


@pytest.fixture
def repo(tmp_path):
    return serving_repo(tmp_path / "repo", auth=True, registry_refresh_seconds=0.2)


@pytest.fixture
def service(repo) -> LookupService:
    service = create_lookup_service(repo.config())
    yield service
    service.snapshots.close()


def body_for(path: str, workspace: str = "prod") -> bytes:
    if path == INGEST:
        return json.dumps(
            {"workspaceName": workspace, "records": {"clicks": [click("u1", "2024-01-05T00:00:00Z", 1.0)]}}
        ).encode()
    params = {"workspaceName": workspace, "featureServiceName": "svc"}
    if path == GET:
        params["joinKeyMap"] = {"user_id": "u1"}
    if path == BATCH:
        params["requestData"] = [{"joinKeyMap": {"user_id": "u1"}}]
    return json.dumps({"params": params}).encode()


def call(service: LookupService, path: str, header: str | None, workspace: str = "prod"):
    headers = {"authorization": header} if header is not None else {}
    response = service.handle(Request("POST", path, headers, body_for(path, workspace)))
    return response.status, response.json(), response.headers


def key(repo, role: str, workspace: str = "prod") -> str:
    return create_api_key(repo.config(), workspace, role, description=f"{role} test key")


@pytest.mark.parametrize("path", [GET, BATCH, METADATA, INGEST])
def test_every_api_endpoint_needs_a_key_and_says_how_to_send_one(service, path):
    status, body, headers = call(service, path, None)
    assert status == 401
    assert "Authorization: Tecton-key <key>" in body["message"] and "api-key create" in body["message"]
    assert headers["WWW-Authenticate"].startswith("Tecton-key")


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Tecton-key",
        "Tecton-key fpk_000000000000_not-a-real-key-but-well-formed-xx",
        "Bearer garbage",
        "Tecton-key fpk_",
    ],
)
def test_bad_keys_are_401(service, header):
    status, body, _ = call(service, GET, header)
    assert status == 401
    assert "Tecton-key" in body["message"] or "invalid or revoked" in body["message"]


def test_a_missing_key_is_401_even_for_a_workspace_that_does_not_exist(service):
    # Authentication comes first: an anonymous caller learns nothing about which workspaces exist.
    assert call(service, GET, None, workspace="no_such_workspace")[0] == 401
    assert (
        call(service, GET, "Bearer fpk_000000000000_xxxxxxxxxxxxxxxxxxxxxxxx", "no_such_workspace")[0] == 401
    )


def test_both_header_schemes_work_and_roles_allow_their_endpoints(repo, service):
    consumer, ingest, admin = key(repo, "consumer"), key(repo, "ingest"), key(repo, "admin")
    for header in (f"Tecton-key {consumer}", f"Bearer {consumer}", f"tecton-key {consumer}"):
        assert call(service, GET, header)[0] == 200
    assert call(service, BATCH, f"Tecton-key {consumer}")[0] == 200
    assert call(service, METADATA, f"Tecton-key {consumer}")[0] == 200
    assert call(service, INGEST, f"Tecton-key {ingest}")[0] == 200
    for path in (GET, BATCH, METADATA, INGEST):
        assert call(service, path, f"Bearer {admin}")[0] == 200


@pytest.mark.parametrize(
    ("role", "path"),
    [("consumer", INGEST), ("ingest", GET), ("ingest", BATCH), ("ingest", METADATA)],
)
def test_endpoints_outside_the_role_are_403(repo, service, role, path):
    status, body, _ = call(service, path, f"Tecton-key {key(repo, role)}")
    assert status == 403
    assert f"{role} on workspace 'prod'" in body["message"] and "may not call" in body["message"]


def test_other_workspaces_are_403_whether_or_not_they_exist(repo, service):
    consumer = f"Tecton-key {key(repo, 'consumer')}"
    existing = call(service, GET, consumer, workspace="staging")
    missing = call(service, GET, consumer, workspace="no_such_workspace")
    assert existing[0] == missing[0] == 403
    assert existing[1]["message"].replace("staging", "X") == missing[1]["message"].replace(
        "no_such_workspace", "X"
    )
    # A key for staging works there.
    assert call(service, GET, f"Tecton-key {key(repo, 'consumer', 'staging')}", workspace="staging")[0] == 200


def test_health_and_metrics_need_no_key(service):
    assert service.handle(Request("GET", "/healthz", {}, b"")).status == 200
    assert service.handle(Request("GET", "/metrics", {}, b"")).status == 200


def test_revocation_takes_effect_within_the_refresh_interval(repo, service):
    secret = key(repo, "consumer")
    header = f"Tecton-key {secret}"
    assert call(service, GET, header)[0] == 200
    store = open_access_store(repo.config())
    store.revoke_api_key(secret.split("_")[1])
    revoked_at = time.monotonic()
    while call(service, GET, header)[0] != 401:
        assert time.monotonic() - revoked_at < 2.0, "revoked key still accepted after the refresh interval"
        time.sleep(0.05)
    assert call(service, GET, f"Tecton-key {key(repo, 'consumer')}")[0] == 200  # other keys unaffected


def test_keys_are_stored_only_as_hashes(repo):
    secret = key(repo, "admin")
    store = open_access_store(repo.config())
    (listed,) = store.list_api_keys()
    assert listed.id in secret and listed.active
    assert "fpk_" + listed.id + "_..." == listed.display
    raw = repo.config().registry_path.read_bytes()
    wal = repo.config().registry_path.with_name("registry.db-wal")
    raw += wal.read_bytes() if wal.exists() else b""
    assert secret.encode() not in raw and secret.split("_", 2)[2].encode() not in raw
    identity = store.authenticate(secret)
    assert identity is not None and identity.describe().startswith(f"API key fpk_{listed.id}_")
    assert store.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None


def test_cli_creates_lists_and_revokes_keys(repo):
    created = repo.cli(
        "api-key", "create", "--workspace", "prod", "--role", "ingest", "--description", "pipeline"
    )
    secret = created.stdout.strip().splitlines()[0]
    assert secret.startswith("fpk_") and "not shown again" in created.stderr
    quiet = repo.cli("api-key", "create", "-w", "staging", "--quiet").stdout.strip()
    assert quiet.startswith("fpk_") and len(quiet.splitlines()) == 1
    listing = repo.cli("api-key", "list").stdout
    key_id = secret.split("_")[1]
    assert key_id in listing and "ingest" in listing and "pipeline" in listing and "active" in listing
    assert secret not in listing and quiet not in listing
    assert quiet.split("_")[1] not in repo.cli("api-key", "list", "--workspace", "prod").stdout
    assert "Revoked API key" in repo.cli("api-key", "revoke", key_id).stdout
    assert "revoked" in repo.cli("api-key", "list").stdout
    bad = repo.cli("api-key", "revoke", "000000000000", check=False)
    assert bad.returncode == 1 and "no API key with id" in bad.stderr
    bad = repo.cli("api-key", "create", "--workspace", "nope", check=False)
    assert bad.returncode == 1 and "workspace 'nope' does not exist" in bad.stderr
    bad = repo.cli("api-key", "create", "--workspace", "prod", "--role", "owner", check=False)
    assert bad.returncode == 1 and "unknown role 'owner'" in bad.stderr
