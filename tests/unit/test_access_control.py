"""Workspace roles for CLI actions (issue: access control), checked when `auth: {enabled: true}`."""

from __future__ import annotations

import pytest
from helpers import events_repo
from test_point_in_time import EVENTS, VIEW


@pytest.fixture
def repo(tmp_path):
    return events_repo(tmp_path, VIEW, tables=EVENTS, config_extra="auth: {enabled: true}\n")


def as_user(repo, user: str, *args: str, check: bool = True):
    return repo.cli(*args, check=check, env={"FEATUREPLANE_USER": user, "FEATUREPLANE_API_KEY": ""})


def denied(result, role: str) -> bool:
    return result.returncode == 1 and f"needs the {role} role" in result.stderr


def test_roles_gate_cli_actions(repo):
    # Bootstrap: nobody holds a role yet, so the first owner can be named.
    as_user(repo, "alice", "access", "assign-role", "--workspace", "*", "--role", "owner", "--user", "alice")
    # Only platform owners create live workspaces; anyone may create a development one, and owns it.
    assert denied(as_user(repo, "bob", "workspace", "create", "prod", "--live", check=False), "owner")
    as_user(repo, "alice", "workspace", "create", "prod", "--live")
    as_user(repo, "bob", "workspace", "create", "bob_dev")
    as_user(repo, "bob", "apply", "--yes", "-w", "bob_dev")

    # Without a role on prod, bob cannot even plan; as viewer he can plan but not apply.
    assert denied(as_user(repo, "bob", "plan", "-w", "prod", check=False), "viewer")
    as_user(repo, "alice", "access", "assign-role", "-w", "prod", "--role", "viewer", "--user", "bob")
    assert "5 to create" in as_user(repo, "bob", "plan", "-w", "prod").stdout
    refused = as_user(repo, "bob", "apply", "--yes", "-w", "prod", check=False)
    assert (
        denied(refused, "editor")
        and "featureplane access assign-role --workspace prod --role editor --user bob" in refused.stderr
    )
    as_user(repo, "alice", "access", "assign-role", "-w", "prod", "--role", "editor", "--user", "bob")
    as_user(repo, "bob", "apply", "--yes", "-w", "prod")

    # Operators materialize but do not apply.
    as_user(repo, "alice", "access", "assign-role", "-w", "prod", "--role", "operator", "--user", "carol")
    as_user(
        repo, "carol", "materialize", "amounts", "-w", "prod", "--start", "2024-01-01", "--end", "2024-01-03"
    )
    assert denied(as_user(repo, "dave", "materialize", "amounts", "-w", "prod", "--start", "2024-01-01",
                          "--end", "2024-01-02", check=False), "operator")  # fmt: skip

    # Suppressing recreates and deleting workspaces are for owners.
    view = repo.root / "views.py"
    view.write_text(
        view.read_text().replace(
            "SELECT user_id, ts, amount FROM", "SELECT user_id, ts, amount * 2 AS amount FROM"
        )
    )
    assert denied(
        as_user(repo, "bob", "apply", "--yes", "-w", "prod", "--suppress-recreates", check=False), "owner"
    )
    as_user(repo, "alice", "apply", "--yes", "-w", "prod", "--suppress-recreates")
    assert denied(as_user(repo, "bob", "workspace", "delete", "prod", "--yes", check=False), "owner")

    listing = as_user(repo, "alice", "access", "list", "-w", "prod").stdout
    assert "user:bob" in listing and "editor" in listing and "user:alice  (you)" in listing
    # Taking a role away takes effect at once.
    as_user(repo, "alice", "access", "remove-role", "-w", "prod", "--role", "editor", "--user", "bob")
    assert denied(as_user(repo, "bob", "apply", "--yes", "-w", "prod", check=False), "editor")


def test_service_accounts_act_through_their_api_key(repo):
    as_user(repo, "alice", "access", "assign-role", "--workspace", "*", "--role", "owner", "--user", "alice")
    as_user(repo, "alice", "workspace", "create", "prod", "--live")
    key = as_user(
        repo, "alice", "api-key", "create", "-w", "prod", "--role", "consumer", "--quiet"
    ).stdout.strip()
    ci = {"FEATUREPLANE_API_KEY": key}
    assert repo.cli("plan", "-w", "prod", env=ci).returncode == 0
    refused = repo.cli("apply", "--yes", "-w", "prod", env=ci, check=False)
    assert refused.returncode == 1 and "service_account:" in refused.stderr and "editor" in refused.stderr
    key_id = key.split("_")[1]
    as_user(repo, "alice", "access", "assign-role", "-w", "prod", "--role", "editor", "--api-key", key_id)
    assert "now at version 1" in repo.cli("apply", "--yes", "-w", "prod", env=ci).stdout
    bad = repo.cli(
        "plan", "-w", "prod", env={"FEATUREPLANE_API_KEY": "fpk_000000000000_" + "x" * 40}, check=False
    )
    assert bad.returncode == 1 and "FEATUREPLANE_API_KEY is not an active API key" in bad.stderr
    # Only owners of the workspace create its keys.
    assert denied(as_user(repo, "mallory", "api-key", "create", "-w", "prod", check=False), "owner")


def test_auth_off_checks_nothing(tmp_path):
    repo = events_repo(tmp_path, VIEW, tables=EVENTS)
    as_user(repo, "anyone", "workspace", "create", "prod", "--live")
    as_user(repo, "anyone", "apply", "--yes", "-w", "prod")
    as_user(repo, "someone_else", "workspace", "delete", "prod", "--yes")


@pytest.mark.integration
def test_dagster_runs_need_the_operator_role(repo, dagster_home):
    from conftest import run_dagster

    as_user(repo, "alice", "access", "assign-role", "--workspace", "*", "--role", "owner", "--user", "alice")
    as_user(repo, "alice", "workspace", "create", "prod", "--live")
    as_user(repo, "alice", "apply", "--yes", "-w", "prod")
    args = [
        "asset",
        "materialize",
        "-m",
        "dagster_project",
        "--select",
        "prod/amounts",
        "--partition",
        "2024-01-01",
    ]
    refused = run_dagster(args, repo, dagster_home, check=False, env={"FEATUREPLANE_USER": "mallory"})
    assert (
        refused.returncode != 0
        and "user:mallory may not materialize prod/amounts" in refused.stdout + refused.stderr
    )
    as_user(repo, "alice", "access", "assign-role", "-w", "prod", "--role", "operator", "--user", "dagster")
    ok = run_dagster(args, repo, dagster_home, env={"FEATUREPLANE_USER": "dagster"})
    assert "RUN_SUCCESS" in ok.stdout + ok.stderr
