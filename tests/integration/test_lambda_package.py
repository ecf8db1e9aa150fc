"""The Lambda package: the zip built by deploy/lambda/build.py, unpacked into a fresh virtualenv that holds
only boto3 (as the Lambda Python runtime does), imports the handler, initialises it from environment
variables and answers a get-features event from DynamoDB (dynalite)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from datetime import datetime

import pytest
from aws_servers import AWS_ENV, use_dynamodb
from conftest import ROOT
from helpers import AMOUNTS_SERVICE, events_repo

from featureplane.access import create_api_key
from featureplane.access.base import hash_key
from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, plan_repository

pytestmark = pytest.mark.integration

INVOKE = """
import json, os, sys, time
started = time.perf_counter()
from featureplane.serving.aws_lambda import handler
init_seconds = time.perf_counter() - started
event = {
    "version": "2.0", "rawPath": "/api/v1/feature-service/get-features",
    "requestContext": {"http": {"method": "POST"}, "stage": "$default"},
    "headers": {"Content-Type": "application/json", "Authorization": "Tecton-key " + os.environ["TEST_KEY"]},
    "isBase64Encoded": False,
    "body": json.dumps({"params": {"workspaceName": "prod", "featureServiceName": "svc",
                                   "joinKeyMap": {"user_id": "u1"},
                                   "metadataOptions": {"includeNames": True}}}),
}
response = handler(event, None)
heavy = sorted(m for m in ("pandas", "pyarrow", "numpy", "duckdb", "dagster") if m in sys.modules)
try:
    import numpy  # noqa: F401
    numpy_installed = True
except ImportError:
    numpy_installed = False
files = sorted(m.__file__ for n, m in list(sys.modules.items()) if n.startswith("featureplane"))
print(json.dumps({"response": response, "heavy": heavy, "numpy_installed": numpy_installed,
                  "featureplane": files, "init_seconds": init_seconds}))
"""


def test_built_zip_answers_a_get_features_event_in_a_boto3_only_virtualenv(tmp_path, dynalite, table_prefix):
    out = tmp_path / "featureplane-lookup.zip"
    subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "lambda" / "build.py"), "--out", str(out)], check=True
    )
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        task = tmp_path / "task"
        archive.extractall(task)
    assert {
        "featureplane/serving/aws_lambda.py",
        "featureplane/online_stores/dynamodb.py",
        "orjson/__init__.py",
    } <= names
    assert "yaml/__init__.py" in names
    for absent in (
        "featureplane/compute/base.py",
        "featureplane/compute/duckdb.py",
        "featureplane/compute/snowflake/",
        "featureplane/offline_stores/",
        "featureplane/cli/",
        "boto3/",
        "dagster_project/",
    ):
        assert not any(n.startswith(absent) for n in names), absent
    assert any(n.endswith(".cpython-311.pyc") for n in names)  # precompiled: /var/task is read-only

    # A fresh virtualenv with only boto3 in it, like the Lambda runtime.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
         "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt"), "boto3"],
        check=True,
    )  # fmt: skip

    # Data to serve: a repository applied (snapshot exported to a file) and materialized into dynalite.
    repo = events_repo(tmp_path / "repo", AMOUNTS_SERVICE)
    snapshot = tmp_path / "serving.json"
    use_dynamodb(repo.config_path, dynalite, table_prefix, snapshot=str(snapshot))
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    # A consumer key created before the apply travels in the exported snapshot (hash and role only).
    key = create_api_key(runtime.config, "prod", "consumer")
    apply_plan(runtime, plan_repository(runtime, "prod"))
    assert key not in snapshot.read_text() and hash_key(key) in snapshot.read_text()
    materialize(runtime, runtime.registry.load("prod"), "amounts", datetime(2024, 1, 1), datetime(2024, 1, 3))
    runtime.close()

    env = {
        **AWS_ENV,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(task),
        "AWS_LAMBDA_FUNCTION_NAME": "featureplane-lookup",
        "FEATUREPLANE_REGISTRY_SNAPSHOT": str(snapshot),
        "FEATUREPLANE_DYNAMODB_TABLE_PREFIX": table_prefix,
        "FEATUREPLANE_DYNAMODB_ENDPOINT_URL": dynalite,
        "TEST_KEY": key,
    }
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", INVOKE], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["featureplane"] and all(f.startswith(str(task)) for f in answer["featureplane"])
    assert answer["heavy"] == [] and answer["numpy_installed"] is False
    response = answer["response"]
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"]) == {
        "result": {"features": [7.0]},
        "metadata": {"features": [{"name": "amounts.amount"}]},
    }
