"""The serving snapshot that Lambda reads instead of the registry: exported by apply to a file or to S3
(moto's server on 127.0.0.1), loaded at init, re-checked in the background (file mtime, S3 ETag), and a
new apply is served without a restart and without blocking requests."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest
from aws_servers import use_dynamodb
from helpers import AMOUNTS_SERVICE, events_repo

from featureplane.materialization.materialize import materialize
from featureplane.registry.snapshot import (
    S3Location,
    SnapshotDocumentError,
    SnapshotDocumentSource,
    open_location,
)
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.serving import aws_lambda

pytestmark = pytest.mark.integration

NEW_SERVICE = "from views import amounts\nfrom featureplane import FeatureService\nsvc2 = FeatureService(name='svc2', features=[amounts])\n"


def get_features(service: str, user: str = "u1") -> dict:
    body = json.dumps(
        {"params": {"workspaceName": "prod", "featureServiceName": service, "joinKeyMap": {"user_id": user}}}
    )
    event = {
        "version": "2.0",
        "rawPath": "/api/v1/feature-service/get-features",
        "requestContext": {"http": {"method": "POST"}},
        "headers": {"content-type": "application/json"},
        "body": body,
        "isBase64Encoded": False,
    }
    response = aws_lambda.handler(event, None)
    return {"status": response["statusCode"], **json.loads(response["body"])}


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not picked up in time"
        time.sleep(0.05)


@pytest.fixture
def lambda_env(monkeypatch):
    """A clean Lambda module for each test, forgotten afterwards."""
    aws_lambda.reset()
    monkeypatch.delenv("FEATUREPLANE_CONFIG", raising=False)
    yield monkeypatch
    aws_lambda.reset()


def test_lambda_serves_dynamodb_from_a_file_snapshot_and_picks_up_applies(
    tmp_path, dynalite, table_prefix, lambda_env
):
    repo = events_repo(tmp_path / "repo", AMOUNTS_SERVICE)
    snapshot = tmp_path / "serving.json"
    use_dynamodb(repo.config_path, dynalite, table_prefix, snapshot=str(snapshot))
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    runtime.registry.create_workspace("dev", live=False)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    materialize(runtime, runtime.registry.load("prod"), "amounts", datetime(2024, 1, 1), datetime(2024, 1, 3))

    # The Lambda's configuration: environment variables only, no featureplane.yaml, no registry.
    for key, value in {
        "FEATUREPLANE_REGISTRY_SNAPSHOT": str(snapshot),
        "FEATUREPLANE_DYNAMODB_TABLE_PREFIX": table_prefix,
        "FEATUREPLANE_DYNAMODB_ENDPOINT_URL": dynalite,
        "FEATUREPLANE_REGISTRY_REFRESH_SECONDS": "0.1",
        "FEATUREPLANE_AUTH": "false",
    }.items():
        lambda_env.setenv(key, value)
    service = aws_lambda.init()
    assert service.snapshots._snapshots.keys() == {"prod"}  # built at init, before any request
    assert service.online_store._client is not None  # so is the DynamoDB client
    assert get_features("svc") == {"status": 200, "result": {"features": [7.0]}}
    body = json.dumps(
        {"params": {"workspaceName": "dev", "featureServiceName": "svc", "joinKeyMap": {"user_id": "u1"}}}
    )
    dev = aws_lambda.handler(
        {"httpMethod": "POST", "path": "/api/v1/feature-service/get-features", "body": body}, None
    )
    assert dev["statusCode"] == 404 and "development workspace" in dev["body"]
    assert get_features("svc2")["status"] == 404

    # A new apply is exported and served within the refresh interval, without re-initialising.
    (repo.root / "more.py").write_text(NEW_SERVICE)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    wait_for(lambda: get_features("svc2")["status"] == 200)
    assert get_features("svc2")["result"]["features"] == [7.0]
    assert aws_lambda._service is service

    # A broken document is ignored (logged): the last good snapshot keeps serving.
    snapshot.write_text("{not json")
    time.sleep(0.5)
    assert get_features("svc2")["status"] == 200
    runtime.close()


def test_s3_snapshot_is_exported_by_apply_and_rechecked_by_etag(tmp_path, moto_server, lambda_env):
    import boto3

    lambda_env.setenv("AWS_ENDPOINT_URL_S3", moto_server)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="features")
    uri = "s3://features/fraud/serving.json"
    repo = events_repo(tmp_path / "repo", AMOUNTS_SERVICE)
    text = repo.config_path.read_text().replace(
        "serving: {registry_refresh_seconds: 0.5, auth: false}",
        f"serving: {{registry_refresh_seconds: 0.1, auth: false, registry_snapshot: '{uri}'}}",
    )
    repo.config_path.write_text(text)
    repo.cli("workspace", "create", "prod", "--live")
    repo.cli("apply", "--yes")
    document = json.loads(s3.get_object(Bucket="features", Key="fraud/serving.json")["Body"].read())
    assert document["format"] == "featureplane-serving-snapshot"
    assert document["project"] == "test" and set(document["workspaces"]["prod"]["definitions"]) == {
        "entity",
        "data_source",
        "feature_view",
        "feature_service",
    }
    repo.cli("materialize", "amounts", "--start", "2024-01-01", "--end", "2024-01-03")

    # The S3 source re-reads the object only when its ETag changed (a conditional GET answers 304).
    source = SnapshotDocumentSource(open_location(uri))
    assert source.version("prod") == 1 and source.poll() is False
    etag = s3.head_object(Bucket="features", Key="fraud/serving.json")["ETag"]
    assert source._tag == etag

    # The Lambda configured by a featureplane.yaml (FEATUREPLANE_CONFIG) reads the same object.
    lambda_env.setenv("FEATUREPLANE_CONFIG", str(repo.config_path))
    aws_lambda.init()
    assert get_features("svc") == {"status": 200, "result": {"features": [7.0]}}
    (repo.root / "more.py").write_text(NEW_SERVICE)
    repo.cli("apply", "--yes")
    assert source.poll() is True and source.version("prod") == 2
    wait_for(lambda: get_features("svc2")["status"] == 200)

    # Re-exporting by hand is a command too.
    s3.delete_object(Bucket="features", Key="fraud/serving.json")
    with pytest.raises(SnapshotDocumentError, match="does not exist"):
        S3Location(uri).fetch()
    out = repo.cli("export-snapshot")
    assert uri in out.stdout
    assert S3Location(uri).fetch().payload is not None


def test_api_keys_travel_in_the_snapshot_and_revocation_reaches_it(tmp_path):
    """A lookup service that reads the serving snapshot (as Lambda does) authenticates with the key
    hashes exported in it; creating or revoking a key with the CLI exports the snapshot again."""
    from featureplane.config import load_config
    from featureplane.serving.app import create_lookup_service
    from featureplane.serving.protocol import Request

    repo = events_repo(tmp_path / "repo", AMOUNTS_SERVICE)
    snapshot = tmp_path / "serving.json"
    repo.config_path.write_text(
        repo.config_path.read_text().replace(
            "serving: {registry_refresh_seconds: 0.5, auth: false}",
            f"serving: {{registry_refresh_seconds: 0.1, auth: true, registry_snapshot: '{snapshot}'}}",
        )
    )
    repo.cli("workspace", "create", "prod", "--live")
    repo.cli("apply", "--yes")
    key = repo.cli("api-key", "create", "--workspace", "prod", "--role", "consumer", "--quiet").stdout.strip()
    assert key not in snapshot.read_text()
    service = create_lookup_service(load_config(repo.config_path))
    body = json.dumps(
        {"params": {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"user_id": "u1"}}}
    )

    def status(with_key: bool) -> int:
        headers = {"authorization": f"Tecton-key {key}"} if with_key else {}
        return service.handle(
            Request("POST", "/api/v1/feature-service/get-features", headers, body.encode())
        ).status

    assert status(False) == 401 and status(True) == 200
    repo.cli("api-key", "revoke", key)
    deadline = time.monotonic() + 10
    while status(True) != 401:
        assert time.monotonic() < deadline, "the revocation did not reach the snapshot's readers"
        time.sleep(0.1)
    service.snapshots.close()
