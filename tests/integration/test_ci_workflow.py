"""The CI workflow's commands, run as the workflow runs them: plan on a pull request, apply on merge,
then the latest partitions through the Dagster CLI."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml
from conftest import BIN, ROOT

pytestmark = pytest.mark.integration
WORKFLOW = ROOT / ".github" / "workflows" / "featureplane.yml"


def script(name: str, repo, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "scripts" / "ci" / name)],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_workflow_runs_the_tested_scripts():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = {
        job: " ".join(str(s.get("run", "")) for s in spec["steps"]) for job, spec in workflow["jobs"].items()
    }
    assert "scripts/ci/plan.sh" in steps["plan"]
    assert "scripts/ci/apply.sh" in steps["apply"] and "scripts/ci/materialize-latest.sh" in steps["apply"]
    assert workflow["jobs"]["plan"]["if"] == "github.event_name == 'pull_request'"


def test_plan_apply_and_materialize_latest(example_repo, dagster_home, tmp_path):
    repo = example_repo
    repo.cli("workspace", "create", "prod", "--live")
    env = {
        **repo.env,
        "FEATUREPLANE_WORKSPACE": "prod",
        "DAGSTER_HOME": str(dagster_home),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PLAN_OUTPUT": str(tmp_path / "plan.txt"),
        "PLAN_JSON": str(tmp_path / "plan.json"),
    }
    planned = script("plan.sh", repo, env)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "+ create   feature view     user_daily_spend" in planned.stdout
    assert "will be applied on merge" in planned.stdout
    applied = script("apply.sh", repo, env)
    assert applied.returncode == 0 and "now at version 1" in applied.stdout
    again = script("plan.sh", repo, env)
    assert again.returncode == 0 and "featureplane: no changes" in again.stdout

    materialized = script("materialize-latest.sh", repo, {**env, "DAGSTER_HOME": str(dagster_home)})
    assert materialized.returncode == 0, materialized.stdout[-3000:] + materialized.stderr[-3000:]
    output = materialized.stdout + materialized.stderr
    assert "Warning" not in output, [line for line in output.splitlines() if "Warning" in line]
    (line,) = [line for line in materialized.stdout.splitlines() if line.startswith("materializing ")]
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    views = sorted(v for v, spec in state.definitions.feature_views.items() if spec.is_batch)
    assert sorted(a.lstrip("*").split("/")[1] for a in line.split()[1].split(",")) == views
    for view in views:
        assert runtime.offline_store.version(state.table_id(view)) is not None

    # A broken repository fails the pull request check with the file and line.
    (repo.root / "broken.py").write_text(
        "from featureplane import Entity\nEntity(name='bad name', join_keys=['x'])\n"
    )
    broken = script("plan.sh", repo, env)
    assert broken.returncode == 1 and "broken.py:2" in broken.stdout and "plan failed" in broken.stdout


def test_dg_launch_runs_a_partition_range_as_one_run(applied_example, dagster_home):
    from dagster import DagsterInstance

    repo = applied_example
    env = {**repo.env, "DAGSTER_HOME": str(dagster_home)}
    launched = subprocess.run(
        [
            str(BIN / "dg"),
            "launch",
            "-m",
            "dagster_project",
            "--assets",
            "prod/user_daily_spend",
            "--partition-range",
            "2026-10-22...2026-10-24",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert "Warning" not in launched.stdout + launched.stderr
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1
        assert runs[0].tags["dagster/asset_partition_range_start"] == "2026-10-22"
        assert runs[0].tags["dagster/asset_partition_range_end"] == "2026-10-24"
    state = repo.runtime().registry.load("prod")
    assert repo.runtime().offline_store.version(state.table_id("user_daily_spend")) == 0
