"""The access store behind a featureplane server: keys, roles, users, service accounts and the audit
log through its API, with the caller's own credential (the server decides what it may do).

What the server keeps to itself is refused here: key hashes (the server exports the serving snapshot),
password checks and sessions (``featureplane login`` signs in), writing the audit log (the server writes
it). Standard library only.
"""

from __future__ import annotations

from typing import Any

from featureplane.access.base import (
    AccessError,
    AccessStore,
    ApiKeyInfo,
    AuditEvent,
    CreatedKey,
    Identity,
    RoleBinding,
    ServiceAccountInfo,
    UserInfo,
    key_id_of,
)
from featureplane.errors import FeatureplaneError
from featureplane.registry.client import ServerClient, ServerError, quote


class ServerRefused(AccessError, FeatureplaneError):
    """The server refused an access request (its message is one line a person can act on)."""


def _key(data: dict[str, Any]) -> ApiKeyInfo:
    bindings = tuple(RoleBinding(r["principal"], r["workspace"], r["role"]) for r in data["roles"])
    return ApiKeyInfo(
        data["id"],
        data["principal"],
        bindings,
        data["description"],
        data["created_at"],
        data["created_by"],
        data.get("revoked_at"),
    )


def _user(data: dict[str, Any]) -> UserInfo:
    return UserInfo(
        data["name"],
        bool(data["admin"]),
        data["created_at"],
        data["created_by"],
        data.get("disabled_at"),
        bool(data["has_password"]),
    )


def _account(data: dict[str, Any]) -> ServiceAccountInfo:
    disabled = None if data.get("active", True) else "disabled"
    return ServiceAccountInfo(
        data["id"], data["name"], data["description"], data["created_at"], data["created_by"], disabled
    )


class RemoteAccessStore(AccessStore):
    def __init__(self, client: ServerClient) -> None:
        self.client = client

    def _call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """A request whose refusals (403, and 400, 404, 409, 422) are AccessErrors (ServerRefused)."""
        try:
            return self.client.request(method, path, body, query=query or None)
        except ServerError as exc:
            if exc.status in (400, 403, 404, 409, 422):
                raise ServerRefused(str(exc)) from None
            raise

    # -- keys and roles ---------------------------------------------------------------------------

    def create_api_key(
        self, workspace: str, role: str, *, description: str = "", created_by: str = ""
    ) -> CreatedKey:
        body = {"workspace": workspace, "role": role, "description": description}
        data = self._call("POST", "/api-keys", body)
        return CreatedKey(_key(data["info"]), data["key"])

    def list_api_keys(self, workspace: str | None = None) -> list[ApiKeyInfo]:
        return [_key(k) for k in self._call("GET", "/api-keys", workspace=workspace)]

    def revoke_api_key(self, key_id: str, revoked_by: str = "") -> ApiKeyInfo:
        """Revoke by id; given the key itself, only its id is sent."""
        bare = key_id_of(key_id) or key_id.removeprefix("fpk_").split("_", 1)[0]
        return _key(self._call("DELETE", f"/api-keys/{quote(bare)}"))

    def authenticate(self, key: str) -> Identity | None:
        """The identity of a key, as the server sees it (``/me`` with the key itself)."""
        if key_id_of(key) is None:
            return None
        probe = ServerClient(self.client.url, timeout=self.client.timeout, credential=key)
        try:
            me = probe.request("GET", "/me")
        except ServerError as exc:
            if exc.status == 401:
                return None
            raise
        bindings = tuple(RoleBinding(r["principal"], r["workspace"], r["role"]) for r in me["roles"])
        return Identity(me.get("key_id") or "", me["principal"], bindings)

    def whoami(self) -> dict[str, Any]:
        """The caller as the server sees it (``GET /api/v1/me``)."""
        return self._call("GET", "/me")

    def identity(self, principal_id: str) -> Identity:
        bindings = tuple(b for b in self.bindings() if b.principal_id == principal_id)
        return Identity("", principal_id, bindings)

    def assign_role(self, principal_id: str, workspace: str, role: str, assigned_by: str = "") -> RoleBinding:
        data = self._call("POST", "/roles", {"principal": principal_id, "workspace": workspace, "role": role})
        return RoleBinding(data["principal"], data["workspace"], data["role"])

    def remove_role(self, principal_id: str, workspace: str, role: str) -> None:
        self._call("DELETE", "/roles", principal=principal_id, workspace=workspace, role=role)

    def bindings(self, workspace: str | None = None) -> list[RoleBinding]:
        return [
            RoleBinding(r["principal"], r["workspace"], r["role"])
            for r in self._call("GET", "/roles", workspace=workspace)
        ]

    def active_keys(self) -> list[dict]:
        raise AccessError(
            "key hashes stay on the server: behind a featureplane server, the server exports the "
            "serving snapshot (serving.registry_snapshot in its featureplane.yaml)"
        )

    # -- users and service accounts ---------------------------------------------------------------

    def create_user(
        self, name: str, password: str | None = None, *, admin: bool = False, created_by: str = ""
    ) -> UserInfo:
        return _user(self._call("POST", "/users", {"name": name, "password": password, "admin": admin}))

    def user(self, name: str) -> UserInfo:
        return _user(self._call("GET", f"/users/{quote(name)}"))

    def list_users(self) -> list[UserInfo]:
        return [_user(u) for u in self._call("GET", "/users")]

    def disable_user(self, name: str, disabled_by: str = "") -> UserInfo:
        return _user(self._call("POST", f"/users/{quote(name)}/disable"))

    def set_password(self, name: str, password: str) -> None:
        self._call("PUT", f"/users/{quote(name)}/password", {"password": password})

    def create_service_account(
        self, name: str, *, description: str = "", created_by: str = ""
    ) -> ServiceAccountInfo:
        return _account(self._call("POST", "/service-accounts", {"name": name, "description": description}))

    def service_account(self, account_id: str) -> ServiceAccountInfo:
        wanted = account_id if account_id.startswith("service_account:") else f"service_account:{account_id}"
        for account in self.list_service_accounts():
            if account.id == wanted:
                return account
        raise AccessError(f"no service account {account_id!r} that you manage")

    def list_service_accounts(self) -> list[ServiceAccountInfo]:
        return [_account(a) for a in self._call("GET", "/service-accounts")]

    def add_api_key(self, principal_id: str, *, description: str = "", created_by: str = "") -> CreatedKey:
        kind, _, name = principal_id.partition(":")
        if kind != "service_account" or not name:
            raise AccessError(f"the server makes keys for service accounts, not {principal_id!r}")
        data = self._call("POST", f"/service-accounts/{quote(name)}/api-keys", {"description": description})
        return CreatedKey(_key(data["info"]), data["key"])

    # -- audit log --------------------------------------------------------------------------------

    def audit_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        workspace: str | None = None,
        since: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        events = self._call(
            "GET",
            "/audit",
            actor=actor,
            action=action,
            workspace=workspace,
            since=since,
            before_id=before_id,
            limit=limit,
        )
        return [AuditEvent(**e) for e in events]
