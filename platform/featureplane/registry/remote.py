"""The registry behind a featureplane server (``registry: {type: remote, url: ...}``).

Every call is a request to the server, which checks the caller's roles. Plans are made by the server:
the client sends its repository's definitions and gets the plan against what the server holds; apply
sends the same definitions with the version they were planned against. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import KINDS, DefinitionSet, FeatureViewSpec, from_dict, to_dict
from featureplane.registry.base import Registry, VersionInfo, WorkspaceInfo, WorkspaceState
from featureplane.registry.client import ServerClient, quote

if TYPE_CHECKING:
    from featureplane.registry.plan import Plan

SUPPRESSED = "recreate suppressed"
DELETE_BATCH = 10_000  # keys per delete-keys request (the server takes up to 100,000)


def _add_reports(total: dict[str, Any] | None, part: dict[str, Any]) -> dict[str, Any]:
    if total is None:
        return part
    total["keys"] += part["keys"]
    for store in ("offline", "online"):
        if total.get(store) and part.get(store):
            for count in ("keys", "rows"):
                total[store][count] += part[store][count]
            total[store]["failed_keys"] += part[store]["failed_keys"]
    return total


def workspace_info(data: dict[str, Any]) -> WorkspaceInfo:
    return WorkspaceInfo(
        name=data["name"],
        live=bool(data["live"]),
        version=int(data["version"]),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
    )


def definitions_payload(definitions: DefinitionSet) -> dict[str, list[dict[str, Any]]]:
    return {kind: [to_dict(s) for s in definitions.by_kind(kind).values()] for kind in KINDS}


class RemoteRegistry(Registry):
    def __init__(self, client: ServerClient) -> None:
        self.client = client

    def _workspace_path(self, name: str, rest: str = "") -> str:
        return f"/workspaces/{quote(name)}{rest}"

    def create_workspace(self, name: str, live: bool) -> WorkspaceInfo:
        return workspace_info(self.client.request("POST", "/workspaces", {"name": name, "live": live}))

    def list_workspaces(self) -> list[WorkspaceInfo]:
        return [workspace_info(w) for w in self.client.request("GET", "/workspaces")]

    def get_workspace(self, name: str) -> WorkspaceInfo:
        return workspace_info(self.client.request("GET", self._workspace_path(name)))

    def delete_workspace(self, name: str) -> None:
        self.client.request("DELETE", self._workspace_path(name))

    def version(self, name: str) -> int:
        return int(self.client.request("GET", self._workspace_path(name, "/version"))["version"])

    def load(self, name: str) -> WorkspaceState:
        data = self.client.request("GET", self._workspace_path(name, "/state"))
        state = WorkspaceState(info=workspace_info(data["info"]), definitions=DefinitionSet())
        for kind, specs in data["definitions"].items():
            for spec in specs:
                state.definitions.add(from_dict(kind, spec))
        state.generations = {k: int(v) for k, v in data.get("generations", {}).items()}
        return state

    def plan(
        self,
        name: str,
        desired: DefinitionSet,
        *,
        suppress_recreates: bool = False,
        count_partitions: Callable[[FeatureViewSpec], int] | None = None,
    ) -> Plan:
        """The server's plan (it counts backfill partitions itself; ``count_partitions`` is unused)."""
        from featureplane.registry.plan import Change, Plan

        body = {"definitions": definitions_payload(desired), "suppress_recreates": suppress_recreates}
        data = self.client.request("POST", self._workspace_path(name, "/plan"), body)
        changes = [
            Change(
                action=c["action"],
                kind=c["kind"],
                name=c["name"],
                fields=list(c["fields"]),
                reasons=list(c["reasons"]),
                old=from_dict(c["kind"], c["old"]) if c.get("old") else None,
                new=desired.by_kind(c["kind"]).get(c["name"]),
                backfill_partitions=int(c.get("backfill_partitions", 0)),
                blocked=c.get("blocked", ""),
            )
            for c in data["changes"]
        ]
        return Plan(data["workspace"], bool(data["live"]), int(data["base_version"]), changes, desired)

    def apply(self, plan: Plan, applied_by: str = "") -> int:
        """Apply on the server (it records who: ``applied_by`` is the caller it authenticated)."""
        body = {
            "definitions": definitions_payload(plan.desired),
            "base_version": plan.base_version,
            "suppress_recreates": any(SUPPRESSED in r for c in plan.changes for r in c.reasons),
        }
        data = self.client.request("POST", self._workspace_path(plan.workspace, "/apply"), body)
        return int(data["version"])

    def delete_keys(
        self,
        workspace: str,
        view: str,
        keys: Iterable[dict[str, Any]],
        *,
        online: bool = True,
        offline: bool = True,
        batch: int = DELETE_BATCH,
    ) -> dict[str, Any]:
        """Delete entities' rows on the server, ``batch`` keys per request; the summed report."""
        path = self._workspace_path(workspace, f"/feature-views/{quote(view)}/delete-keys")
        total: dict[str, Any] | None = None
        iterator = iter(keys)
        while chunk := list(islice(iterator, batch)):
            body = {"keys": chunk, "online": online, "offline": offline}
            total = _add_reports(total, self.client.request("POST", path, body))
        return total or {}

    def history(self, name: str) -> list[VersionInfo]:
        return [
            VersionInfo(name, int(v["version"]), v["applied_at"], v["applied_by"], v["summary"])
            for v in self.client.request("GET", self._workspace_path(name, "/history"))
        ]
