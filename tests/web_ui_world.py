"""A team on an account server for the web UI's tests: workspaces ``prod`` (live) and ``dev``, the same
objects applied to both (the view's description, tags and owner carrying markup, for escaping), and
users with and without roles."""

from __future__ import annotations

from dataclasses import dataclass

from account_server import ADMIN, ADMIN_PASSWORD, AccountServer
from store_backends import definitions, entity, source, view

from featureplane.definitions.specs import KINDS, FeatureServiceSpec, ServiceFeatures, to_dict

PASSWORD = "a-long-enough-password"
SCRIPT = "<script>alert('x')</script>"
USERS = {"alice": ("prod", "owner"), "vera": ("prod", "viewer"), "bob": ("dev", "owner"), "carol": None}


@dataclass
class World:
    server: AccountServer
    admin_token: str

    def api(self, method: str, path: str, body=None, token: str | None = None, expect=(200, 201, 204)):
        status, answer, _ = self.server.call(method, path, body, token or self.admin_token)
        assert status in expect, (method, path, status, answer)
        return answer

    def roles(self, workspace: str) -> set[tuple[str, str]]:
        answer = self.api("GET", f"/api/v1/roles?workspace={workspace}")
        return {(r["principal"], r["role"]) for r in answer if r["workspace"] == workspace}

    def key_ids(self) -> set[str]:
        return {k["id"] for k in self.api("GET", "/api/v1/api-keys")}


def prod_definitions(markup: bool) -> dict:
    """Objects to apply; with ``markup`` the view's owner, description and a tag carry a script tag."""
    if markup:
        described = {"owner": f"fraud {SCRIPT}", "description": f"amount {SCRIPT}", "tags": {"team": SCRIPT}}
    else:
        described = {
            "owner": "fraud-team@example.com",
            "description": "Transaction amounts per user, daily",
            "tags": {"team": "fraud", "tier": "gold"},
        }
    amounts = view("amounts", online=True, **described)
    service = FeatureServiceSpec(
        "scoring",
        [ServiceFeatures("amounts", ["amount"])],
        owner="fraud-team@example.com",
        description="Features of the fraud model",
        tags={"model": "fraud_v3"},
    )
    desired = definitions(entity(), source(), amounts, service)
    return {kind: [to_dict(s) for s in desired.by_kind(kind).values()] for kind in KINDS}


def build_world(server: AccountServer, markup: bool = True) -> World:
    world = World(server, server.login(ADMIN, ADMIN_PASSWORD))
    for name in ("prod", "dev"):
        world.api("POST", "/api/v1/workspaces", {"name": name, "live": name == "prod"})
    for user, role in USERS.items():
        world.api("POST", "/api/v1/users", {"name": user, "password": PASSWORD})
        if role:
            body = {"principal": f"user:{user}", "workspace": role[0], "role": role[1]}
            world.api("POST", "/api/v1/roles", body)
    body = {"definitions": prod_definitions(markup), "base_version": 0}
    for workspace in ("prod", "dev"):
        world.api("POST", f"/api/v1/workspaces/{workspace}/apply", body)
    return world
