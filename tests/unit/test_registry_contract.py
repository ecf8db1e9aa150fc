"""One contract for every registry backend (SQLite and PostgreSQL): versioned workspaces, the history of
every apply, apply all-or-nothing, and of concurrent applies to one workspace exactly one wins."""

from __future__ import annotations

import sys
import threading

import pytest
from store_backends import (
    BACKENDS,
    INJECTION,
    backend_config,
    definitions,
    entity,
    plan_for,
    source,
    view,
)

from featureplane.registry import open_registry
from featureplane.registry.base import (
    ConflictError,
    PlanRefused,
    RegistryError,
    WorkspaceExists,
    WorkspaceNotFound,
)
from featureplane.registry.plan import CREATE, DELETE, RECREATE, UPDATE

BASE = (entity(), source())


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def config(backend, tmp_path, request):
    return backend_config(backend, tmp_path, request)


@pytest.fixture
def registry(config):
    registry = open_registry(config)
    yield registry
    registry.close()


def actions(plan) -> dict[str, str]:
    return {c.name: c.action for c in plan.changes}


def test_workspaces_are_created_listed_and_found_by_name(registry):
    prod = registry.create_workspace("prod", live=True)
    assert (prod.name, prod.live, prod.version, prod.kind) == ("prod", True, 0, "live")
    assert prod.created_at.endswith("Z") and prod.created_at == prod.updated_at
    registry.create_workspace("dev", live=False)
    assert [(w.name, w.kind) for w in registry.list_workspaces()] == [
        ("dev", "development"),
        ("prod", "live"),
    ]
    assert registry.get_workspace("prod") == prod
    assert registry.version("dev") == 0
    with pytest.raises(WorkspaceExists, match="already exists"):
        registry.create_workspace("prod", live=False)
    with pytest.raises(WorkspaceNotFound, match=r"'nope' does not exist \(workspaces: dev, prod\)"):
        registry.get_workspace("nope")
    with pytest.raises(WorkspaceNotFound):
        registry.version("nope")
    with pytest.raises(WorkspaceNotFound):
        registry.load("nope")


@pytest.mark.parametrize(
    "name", [INJECTION, "prod\n", "", "1abc", "a-b", "a b", "x" * 129, "caf\u00e9", "a;b", "a\x00b"]
)
def test_invalid_workspace_names_are_refused(registry, name):
    with pytest.raises(RegistryError, match="is not valid: use letters, digits and underscores"):
        registry.create_workspace(name, live=False)
    assert registry.list_workspaces() == []


def test_injection_in_names_is_stored_or_looked_up_harmlessly(registry):
    registry.create_workspace("prod", live=False)
    with pytest.raises(WorkspaceNotFound):
        registry.load(INJECTION)
    with pytest.raises(WorkspaceNotFound):
        registry.delete_workspace(INJECTION)
    # Object names are the repository's business; the registry stores whatever it is given, as data.
    hostile = entity(INJECTION)
    registry.apply(plan_for(registry, "prod", definitions(hostile, *BASE)))
    state = registry.load("prod")
    assert state.definitions.entities[INJECTION] == hostile
    assert [w.name for w in registry.list_workspaces()] == ["prod"]
    assert registry.history("prod")[0].version == 1


def test_apply_versions_the_workspace_and_records_history(registry):
    registry.create_workspace("prod", live=True)
    plan = plan_for(registry, "prod", definitions(*BASE, view()))
    assert actions(plan) == {"user": CREATE, "events": CREATE, "amounts": CREATE}
    assert registry.apply(plan, applied_by="alice") == 1
    state = registry.load("prod")
    assert state.version == 1 and state.generations == {"amounts": 1}
    assert state.definitions.feature_views["amounts"] == view()
    assert state.table_id("amounts") == "prod/amounts/g1"
    assert plan_for(registry, "prod", definitions(*BASE, view())).empty

    update = plan_for(registry, "prod", definitions(*BASE, view(owner="a@b.co")))
    assert actions(update) == {"amounts": UPDATE}
    assert registry.apply(update, applied_by="bob") == 2
    assert registry.load("prod").generations == {"amounts": 1}  # same data generation

    recreate = plan_for(registry, "prod", definitions(*BASE, view(owner="a@b.co", sql="SELECT 2")))
    assert actions(recreate) == {"amounts": RECREATE}
    registry.apply(recreate, applied_by="carol")
    state = registry.load("prod")
    assert (
        state.generations == {"amounts": 3} and state.definitions.feature_views["amounts"].owner == "a@b.co"
    )

    delete = plan_for(registry, "prod", definitions(*BASE))
    assert actions(delete) == {"amounts": DELETE}
    registry.apply(delete)
    assert "amounts" not in registry.load("prod").definitions.feature_views

    history = registry.history("prod")
    assert [(v.version, v.applied_by, v.summary) for v in history] == [
        (1, "alice", "3 to create"),
        (2, "bob", "1 to update"),
        (3, "carol", "1 to recreate"),
        (4, "", "1 to delete"),
    ]
    assert all(v.workspace == "prod" and v.applied_at.endswith("Z") for v in history)
    info = registry.get_workspace("prod")
    assert info.version == registry.version("prod") == 4 and info.updated_at >= info.created_at


def test_a_stale_plan_is_refused_and_writes_nothing(registry):
    registry.create_workspace("prod", live=False)
    stale = plan_for(registry, "prod", definitions(*BASE, view("other")))
    registry.apply(plan_for(registry, "prod", definitions(*BASE, view())))
    with pytest.raises(ConflictError, match=r"changed since the plan was made .*now at version 1"):
        registry.apply(stale)
    state = registry.load("prod")
    assert state.version == 1 and set(state.definitions.feature_views) == {"amounts"}
    assert len(registry.history("prod")) == 1


def test_a_failing_apply_leaves_nothing_behind(registry, monkeypatch):
    registry.create_workspace("prod", live=False)
    plan = plan_for(registry, "prod", definitions(*BASE, view()))
    module = sys.modules[type(registry).__module__]
    calls = {"n": 0}
    real = module.to_json

    def explode(spec):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(spec)

    monkeypatch.setattr(module, "to_json", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        registry.apply(plan)
    state = registry.load("prod")
    assert state.version == 0 and not state.definitions.all() and registry.history("prod") == []


def test_an_update_of_an_object_that_is_gone_is_a_conflict_and_writes_nothing(registry):
    registry.create_workspace("prod", live=False)
    registry.apply(plan_for(registry, "prod", definitions(*BASE, view())))
    plan = plan_for(registry, "prod", definitions(*BASE, view(owner="x"), view("second")))
    bogus = plan_for(registry, "prod", definitions(*BASE, view(owner="x"), view("second")))
    (change,) = [c for c in bogus.changes if c.action == UPDATE]
    change.name = "vanished"
    with pytest.raises(ConflictError, match="'vanished' is not in workspace 'prod'"):
        registry.apply(bogus)
    state = registry.load("prod")
    assert state.version == 1 and set(state.definitions.feature_views) == {"amounts"}
    assert registry.apply(plan) == 2  # the real plan still applies


def test_prevent_destroy_is_enforced_by_apply_in_live_workspaces(registry):
    for name, live in (("prod", True), ("dev", False)):
        registry.create_workspace(name, live=live)
        registry.apply(plan_for(registry, name, definitions(*BASE, view(prevent_destroy=True))))
    for name in ("prod", "dev"):
        plan = plan_for(registry, name, definitions(*BASE))
        assert actions(plan) == {"amounts": DELETE}
        if name == "prod":
            with pytest.raises(PlanRefused, match=r"prevent_destroy=True protects feature view 'amounts'"):
                registry.apply(plan)
        else:
            registry.apply(plan)
    assert "amounts" in registry.load("prod").definitions.feature_views
    assert registry.version("prod") == 1
    assert "amounts" not in registry.load("dev").definitions.feature_views


def test_deleting_a_workspace_removes_its_state_and_history(registry):
    for name in ("prod", "dev"):
        registry.create_workspace(name, live=False)
        registry.apply(plan_for(registry, name, definitions(*BASE, view())))
    registry.delete_workspace("prod")
    assert [w.name for w in registry.list_workspaces()] == ["dev"]
    with pytest.raises(WorkspaceNotFound):
        registry.history("prod")
    again = registry.create_workspace("prod", live=True)
    assert (
        again.version == 0 and registry.history("prod") == [] and not registry.load("prod").definitions.all()
    )
    assert registry.load("dev").version == 1 and len(registry.history("dev")) == 1


def test_two_registries_on_one_store_see_each_others_applies(config, registry):
    other = open_registry(config)
    try:
        registry.create_workspace("prod", live=False)
        other.apply(plan_for(other, "prod", definitions(*BASE)))
        assert registry.version("prod") == 1
        assert set(registry.load("prod").definitions.entities) == {"user"}
    finally:
        other.close()
    assert registry.version("prod") == 1  # closing one leaves the other usable


def round_plans(registry, round_number: int, clients: int) -> list:
    """One plan per client against the workspace's current version, each desiring something different."""
    return [
        plan_for(registry, "prod", definitions(*BASE, view(f"v{round_number}_{i}", owner=f"client{i}")))
        for i in range(clients)
    ]


def check_round(registry, plans, outcomes, version: int) -> None:
    winners = [o for o in outcomes if isinstance(o, tuple)]
    assert [v for v, _ in winners] == [version], outcomes
    conflicts = [o for o in outcomes if isinstance(o, ConflictError)]
    assert len(conflicts) == len(plans) - 1, outcomes
    assert all("changed since the plan was made" in str(c) for c in conflicts)
    state = registry.load("prod")
    assert state.version == version
    (winner,) = [p for _, p in winners]
    assert set(state.definitions.feature_views) == set(plans[winner].desired.feature_views)  # nothing partial
    assert len(registry.history("prod")) == version


def test_concurrent_applies_from_8_threads_exactly_one_wins_each_round(config, registry):
    registry.create_workspace("prod", live=True)
    clients = 8
    for round_number in range(1, 6):
        plans = round_plans(registry, round_number, clients)
        outcomes: list[object] = []
        barrier = threading.Barrier(clients)
        lock = threading.Lock()

        def run(index: int, plans=plans, barrier=barrier, outcomes=outcomes, lock=lock) -> None:
            client = open_registry(config)  # each client its own registry, as separate CLIs would be
            try:
                barrier.wait(timeout=60)
                try:
                    outcome: object = (client.apply(plans[index], applied_by=f"client{index}"), index)
                except ConflictError as exc:
                    outcome = exc
                with lock:
                    outcomes.append(outcome)
            finally:
                client.close()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        check_round(registry, plans, outcomes, round_number)
