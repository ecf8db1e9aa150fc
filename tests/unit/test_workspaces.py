"""Development workspaces, change semantics (prevent_destroy, suppressed recreates) and workspace deletion."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
import pytest
from helpers import events_repo
from test_point_in_time import EVENTS, VIEW

from featureplane.materialization.materialize import materialize
from featureplane.registry.base import PlanRefused, WorkspaceNotFound
from featureplane.registry.plan import RECREATE, UPDATE
from featureplane.repo.planning import apply_plan, delete_workspace, plan_repository
from featureplane.retrieval.workspace import Workspace

D1, D4 = datetime(2024, 1, 1), datetime(2024, 1, 4)


@pytest.fixture
def repo(tmp_path):
    repo = events_repo(tmp_path, VIEW, tables=EVENTS)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    runtime.registry.create_workspace("dev", live=False)
    for ws in ("prod", "dev"):
        apply_plan(runtime, plan_repository(runtime, ws))
    return repo


def edit(repo, old: str, new: str) -> None:
    path = repo.root / "views.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_development_workspaces_compute_from_sources_like_live_ones_materialize(repo):
    runtime = repo.runtime()
    prod = runtime.registry.load("prod")
    for view in ("amounts", "scaled"):
        materialize(runtime, prod, view, D1, D4)
    spine = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u1"],
            "ts": [datetime(2024, 1, 2, 9), datetime(2024, 1, 2, 10), datetime(2024, 1, 3), D1],
        }
    )
    live = Workspace(runtime, prod).get_feature_service("svc").get_historical_features(spine)
    dev = Workspace(runtime, runtime.registry.load("dev"))
    computed = dev.get_feature_service("svc").get_historical_features(spine, from_source=True)
    pd.testing.assert_frame_equal(live, computed)
    # A development workspace has no materialized data to read.
    with pytest.raises(Exception, match="development workspace"):
        dev.get_feature_service("svc").get_historical_features(spine)
    rows = dev.get_feature_view("scaled").run_transformation("2024-01-02", "2024-01-03")
    assert rows.to_dict("records") == [
        {"user_id": "u1", "ts": pd.Timestamp("2024-01-02 10:00"), "amount_x10": 20.0}
    ]


def test_prevent_destroy_refuses_recreate_and_delete_in_live_workspaces(repo):
    runtime = repo.runtime()
    edit(
        repo,
        "ttl=timedelta(days=1), online=True)",
        "ttl=timedelta(days=1), online=True, prevent_destroy=True)",
    )
    for ws in ("prod", "dev"):
        apply_plan(runtime, plan_repository(runtime, ws))
    edit(repo, "SELECT user_id, ts, amount FROM", "SELECT user_id, ts, amount + 1 AS amount FROM")
    plan = plan_repository(runtime, "prod")
    (change,) = plan.changes
    assert (
        change.action == RECREATE
        and "prevent_destroy=True" in change.blocked
        and "'amounts'" in change.blocked
    )
    with pytest.raises(PlanRefused, match="amounts"):
        apply_plan(runtime, plan)
    # Even a hand-made plan that hides the protection is refused by the registry itself.
    change.blocked = ""
    with pytest.raises(PlanRefused, match="prevent_destroy=True protects feature view 'amounts'"):
        apply_plan(runtime, plan)
    assert runtime.registry.get_workspace("prod").version == 2
    # Development workspaces are not protected.
    apply_plan(runtime, plan_repository(runtime, "dev"))
    # Owners can apply the logic change without rebuilding history.
    suppressed = plan_repository(runtime, "prod", suppress_recreates=True)
    assert suppressed.changes[0].action == UPDATE and not suppressed.blocked
    generation = runtime.registry.load("prod").generations["amounts"]
    apply_plan(runtime, suppressed)
    assert runtime.registry.load("prod").generations["amounts"] == generation
    # Deleting is refused too.
    (repo.root / "views.py").write_text("")
    with pytest.raises(PlanRefused):
        apply_plan(runtime, plan_repository(runtime, "prod"))


def test_plan_json_and_exit_codes_for_ci(repo):
    assert repo.cli("plan", "-w", "prod", "--detailed-exitcode").returncode == 0
    edit(repo, "ttl=timedelta(days=1), online=True)", "ttl=timedelta(days=2), online=True)")
    result = repo.cli("plan", "-w", "prod", "--json", "--detailed-exitcode", check=False)
    assert result.returncode == 2
    plan = json.loads(result.stdout)
    assert plan["counts"] == {"create": 0, "update": 1, "recreate": 0, "delete": 0}
    assert plan["changes"][0] == {
        "action": "update",
        "kind": "feature_view",
        "name": "amounts",
        "fields": ["ttl_seconds"],
        "reasons": [],
        "backfill_partitions": 0,
        "blocked": "",
    }
    (repo.root / "broken.py").write_text("import nope\n")
    errors = repo.cli("plan", "-w", "prod", "--detailed-exitcode", check=False)
    assert errors.returncode == 1 and "broken.py:1" in errors.stderr


def test_a_saved_plan_is_applied_exactly_and_refused_once_stale(repo, tmp_path):
    edit(repo, "ttl=timedelta(days=1), online=True)", "ttl=timedelta(days=2), online=True)")
    saved = tmp_path / "plan.json"
    repo.cli("plan", "-w", "prod", "--out", str(saved))
    edit(repo, "ttl=timedelta(days=2), online=True)", "ttl=timedelta(days=3), online=True)")
    repo.cli("apply", "-w", "prod", "--yes", "--plan", str(saved))
    runtime = repo.runtime()
    assert runtime.registry.load("prod").feature_view("amounts").ttl == timedelta(days=2)
    stale = repo.cli("apply", "-w", "prod", "--yes", "--plan", str(saved), check=False)
    assert stale.returncode == 1 and "changed since the plan was made" in stale.stderr


def test_deleting_a_workspace_removes_its_registry_state_and_data(repo):
    runtime = repo.runtime()
    prod = runtime.registry.load("prod")
    materialize(runtime, prod, "amounts", D1, D4)
    runtime.registry.create_workspace("other", live=True)
    apply_plan(runtime, plan_repository(runtime, "other"))
    other = runtime.registry.load("other")
    materialize(runtime, other, "amounts", D1, D4)
    refused = repo.cli("workspace", "delete", "prod", check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert runtime.registry.get_workspace("prod")
    assert "Deleted workspace prod" in repo.cli("workspace", "delete", "prod", "--yes").stdout
    with pytest.raises(WorkspaceNotFound):
        runtime.registry.load("prod")
    assert not (runtime.config.offline_path / "prod").exists()
    online = runtime.online_store
    assert online.read([(prod.table_id("amounts"), ("u1",))]) == [None]
    assert online.sync_marker(prod.table_id("amounts")) is None
    # The other workspace is untouched.
    assert online.read([(other.table_id("amounts"), ("u1",))])[0] is not None
    assert runtime.offline_store.version(other.table_id("amounts")) is not None
    assert delete_workspace(runtime, "dev") == ["dev/amounts/g1", "dev/scaled/g1"]
