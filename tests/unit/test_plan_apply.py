"""Plans of a repository classify changes correctly, and the CLI plans and applies them.

What apply guarantees on every registry backend (versions, history, atomicity, stale plans, concurrent
applies) is test_registry_contract.py's."""

from __future__ import annotations

import pytest
from helpers import events_repo
from test_repo_validation import GOOD_VIEW

from featureplane.registry.plan import CREATE, DELETE, RECREATE, UPDATE
from featureplane.repo.planning import apply_plan, plan_repository


def actions(plan) -> dict[str, str]:
    return {c.name: c.action for c in plan.changes}


@pytest.fixture
def repo(tmp_path):
    repo = events_repo(tmp_path, GOOD_VIEW)
    repo.runtime().registry.create_workspace("prod", live=True)
    return repo


def edit(repo, old: str, new: str, file: str = "views.py") -> None:
    path = repo.root / file
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_first_plan_creates_everything_and_apply_versions_it(repo):
    runtime = repo.runtime()
    plan = plan_repository(runtime, "prod")
    assert actions(plan) == {"user": CREATE, "events": CREATE, "amounts": CREATE}
    assert plan.base_version == 0
    assert apply_plan(runtime, plan) == 1
    again = plan_repository(runtime, "prod")
    assert again.empty and again.base_version == 1
    state = runtime.registry.load("prod")
    assert state.generations["amounts"] == 1
    assert [v.version for v in runtime.registry.history("prod")] == [1]


def test_metadata_change_is_an_in_place_update(repo):
    runtime = repo.runtime()
    apply_plan(runtime, plan_repository(runtime, "prod"))
    edit(
        repo,
        "batch_schedule=timedelta(days=1))",
        "batch_schedule=timedelta(days=1), owner='a@b.co', ttl='3d')",
    )
    plan = plan_repository(runtime, "prod")
    (change,) = plan.changes
    assert (change.action, change.fields) == (UPDATE, ["owner", "ttl_seconds"])
    apply_plan(runtime, plan)
    assert runtime.registry.load("prod").generations["amounts"] == 1  # same data generation


def test_logic_change_is_a_recreate_with_a_new_generation_and_a_diff(repo):
    runtime = repo.runtime()
    apply_plan(runtime, plan_repository(runtime, "prod"))
    edit(repo, "SELECT user_id, ts, amount FROM", "SELECT user_id, ts, amount * 2 AS amount FROM")
    plan = plan_repository(runtime, "prod")
    (change,) = plan.changes
    assert change.action == RECREATE and "transformation" in change.reasons[0]
    assert any(line.startswith("+") and "amount * 2" in line for line in change.transformation_diff())
    assert change.backfill_partitions > 0
    apply_plan(runtime, plan)
    assert runtime.registry.load("prod").generations["amounts"] == 2


def test_whitespace_and_comment_changes_in_python_views_do_not_recreate(tmp_path):
    views = GOOD_VIEW.replace('mode="snowflake_sql"', 'mode="pandas"').replace(
        'return f"SELECT user_id, ts, amount FROM {events}"', "return events[['user_id', 'ts', 'amount']]"
    )
    repo = events_repo(tmp_path, views)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    edit(repo, "    return events[", "    # a comment\n\n    return events[")
    assert plan_repository(runtime, "prod").empty


def test_source_change_recreates_the_views_built_on_it(repo):
    runtime = repo.runtime()
    apply_plan(runtime, plan_repository(runtime, "prod"))
    from helpers import make_warehouse

    runtime.close()  # DuckDB allows one attachment of a file per process
    make_warehouse(repo, {"raw.events2": "SELECT * FROM raw.events"})
    edit(repo, 'table="raw.events"', 'table="raw.events2"', file="base.py")
    plan = plan_repository(runtime, "prod")
    assert actions(plan) == {"events": UPDATE, "amounts": RECREATE}
    assert any("source 'events' changed" in r for r in plan.changes[0].reasons)


def test_deleting_a_view(repo):
    runtime = repo.runtime()
    apply_plan(runtime, plan_repository(runtime, "prod"))
    (repo.root / "views.py").write_text("")
    plan = plan_repository(runtime, "prod")
    assert actions(plan) == {"amounts": DELETE}
    apply_plan(runtime, plan)
    assert "amounts" not in runtime.registry.load("prod").definitions.feature_views


def test_cli_plan_apply_and_workspaces(repo):
    out = repo.cli("plan", "--workspace", "prod").stdout
    assert "+ create   feature view  amounts" in out
    assert "3 to create, 0 to update, 0 to recreate, 0 to delete" in out
    assert repo.cli("plan", "-w", "prod", "--detailed-exitcode", check=False).returncode == 2
    failed = repo.cli("apply", "-w", "prod", check=False)
    assert failed.returncode == 1 and "--yes" in failed.stderr
    assert "now at version 1" in repo.cli("apply", "-w", "prod", "--yes").stdout
    assert repo.cli("plan", "-w", "prod", "--detailed-exitcode").returncode == 0
    repo.cli("workspace", "create", "dev")
    listing = repo.cli("workspace", "list").stdout
    assert "* dev" in listing.replace("  ", " ") or "*  dev" in listing
    assert "development" in listing and "live" in listing
    repo.cli("workspace", "select", "prod")
    assert "No changes" in repo.cli("plan").stdout
    missing = repo.cli("workspace", "select", "nope", check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
