"""The access store interface, API key format and the identity a verified key carries.

An API key reads ``fpk_<id>_<secret>``. The id is public (it is what ``api-key list`` shows and
``api-key revoke`` takes); the whole key is stored only as its SHA-256 digest. Keys are 256-bit random
tokens, so a fast digest is enough: there is nothing to brute-force that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from featureplane.access.roles import permissions_of

KEY_PREFIX = "fpk"
_KEY = re.compile(r"^fpk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")


class AccessError(Exception):
    """An access-control request that cannot be done (unknown key, unknown role, ...)."""


@dataclass(frozen=True)
class RoleBinding:
    principal_id: str
    workspace: str
    role: str


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: never its secret."""

    id: str
    principal_id: str
    bindings: tuple[RoleBinding, ...]
    description: str
    created_at: str
    created_by: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def display(self) -> str:
        return f"{KEY_PREFIX}_{self.id}_..."


@dataclass(frozen=True)
class CreatedKey:
    info: ApiKeyInfo
    secret: str


@dataclass(frozen=True)
class Identity:
    """A verified API key: its principal and the roles that principal holds."""

    key_id: str
    principal_id: str
    bindings: tuple[RoleBinding, ...]
    _grants: frozenset[tuple[str | None, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        grants = {(b.workspace, p) for b in self.bindings for p in permissions_of(b.role)}
        grants |= {(None, p) for _, p in grants}
        object.__setattr__(self, "_grants", frozenset(grants))

    def can(self, permission: str, workspace: str | None = None) -> bool:
        """Whether the principal may do ``permission`` on ``workspace`` (on some workspace when None);
        a role held on ``*`` holds on every workspace."""
        return (workspace, permission) in self._grants or ("*", permission) in self._grants

    def describe(self) -> str:
        roles = ", ".join(f"{b.role} on workspace {b.workspace!r}" for b in self.bindings) or "no roles"
        return f"API key {KEY_PREFIX}_{self.key_id}_... ({roles})"


def new_key() -> tuple[str, str]:
    """A new (key id, full key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(key: str) -> str | None:
    """The id of a well-formed key, or None."""
    match = _KEY.match(key)
    return match.group(1) if match else None


def bare_key_id(text: str) -> str:
    """The key id in ``fpk_<id>_<secret>``, ``fpk_<id>_...`` or a bare id (what ``api-key revoke`` takes)."""
    return key_id_of(text) or text.removeprefix(f"{KEY_PREFIX}_").split("_", 1)[0]


def api_key_role(role: str) -> str:
    """``role`` if an API key may be created with it, else AccessError."""
    from featureplane.access.roles import check_role

    try:
        return check_role(role)
    except ValueError as exc:
        raise AccessError(str(exc)) from None


def workspace_role(role: str) -> str:
    """``role`` if a principal may be given it on a workspace, else AccessError."""
    from featureplane.access.roles import WORKSPACE_ROLES, check_role

    try:
        return check_role(role, WORKSPACE_ROLES)
    except ValueError as exc:
        raise AccessError(str(exc)) from None


def binding_workspace(workspace: str) -> str:
    """``workspace`` if a role can be held on it (a valid workspace name, or ``*``), else AccessError."""
    from featureplane.access.roles import ALL_WORKSPACES
    from featureplane.registry.base import RegistryError, check_workspace_name

    if workspace == ALL_WORKSPACES:
        return workspace
    try:
        return check_workspace_name(workspace)
    except RegistryError as exc:
        raise AccessError(str(exc)) from None


def principal_kind(principal_id: str) -> tuple[str, str]:
    """(kind, name) of ``user:<name>`` or ``service_account:<id>``, else AccessError."""
    kind, _, name = principal_id.partition(":")
    if kind not in ("user", "service_account") or not name:
        raise AccessError(f"principal {principal_id!r:.140} is not user:<name> or service_account:<id>")
    return kind, name


def no_key(key_id: str) -> AccessError:
    return AccessError(f"no API key with id {key_id!r:.140} (see `featureplane api-key list`)")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class AccessStore(ABC):
    @abstractmethod
    def create_api_key(
        self, workspace: str, role: str, *, description: str = "", created_by: str = ""
    ) -> CreatedKey:
        """A new service-account principal with one key and ``role`` on ``workspace``, atomically."""

    @abstractmethod
    def list_api_keys(self, workspace: str | None = None) -> list[ApiKeyInfo]:
        """Every key (revoked ones too), oldest first; only keys with a role on ``workspace`` if given."""

    @abstractmethod
    def revoke_api_key(self, key_id: str, revoked_by: str = "") -> ApiKeyInfo:
        """Revoke a key by id (``fpk_<id>_...`` or the bare id); AccessError if there is no such key."""

    @abstractmethod
    def authenticate(self, key: str) -> Identity | None:
        """The identity of an active key, or None for a malformed, unknown or revoked one."""

    def identity(self, principal_id: str) -> Identity:
        """The roles a principal (``user:<name>`` or ``service_account:<id>``) holds."""
        raise NotImplementedError(f"{type(self).__name__} does not keep role bindings")

    def assign_role(self, principal_id: str, workspace: str, role: str, assigned_by: str = "") -> RoleBinding:
        """Give a principal a role on a workspace (``*``: every workspace); creates a user principal."""
        raise NotImplementedError(f"{type(self).__name__} does not keep role bindings")

    def remove_role(self, principal_id: str, workspace: str, role: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not keep role bindings")

    def bindings(self, workspace: str | None = None) -> list[RoleBinding]:
        """Every role binding (on ``workspace`` and on ``*`` when given)."""
        raise NotImplementedError(f"{type(self).__name__} does not keep role bindings")

    def active_keys(self) -> list[dict]:
        """Every active key as ``{key_id, principal_id, key_hash, bindings: [[workspace, role], ...]}``,
        for the serving snapshot (hashes only, as stored)."""
        raise NotImplementedError(f"{type(self).__name__} cannot export its keys")

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class SnapshotAccessStore(AccessStore):
    """Keys as exported into the serving snapshot (how a lookup service without the registry, such as
    the Lambda function, authenticates). Read-only: keys are created and revoked with the CLI, and reach
    the snapshot when it is exported again."""

    def __init__(self, keys: Callable[[], list[dict]]) -> None:
        self._keys = keys

    def authenticate(self, key: str) -> Identity | None:
        key_id = key_id_of(key)
        if key_id is None:
            return None
        for entry in self._keys():
            if entry["key_id"] == key_id and same_hash(entry["key_hash"], hash_key(key)):
                bindings = tuple(RoleBinding(entry["principal_id"], w, r) for w, r in entry["bindings"])
                return Identity(key_id, entry["principal_id"], bindings)
        return None

    def active_keys(self) -> list[dict]:
        return list(self._keys())

    def _read_only(self) -> AccessError:
        return AccessError(
            "the serving snapshot's keys are read-only: manage keys with `featureplane api-key`"
        )

    def create_api_key(
        self, workspace: str, role: str, *, description: str = "", created_by: str = ""
    ) -> CreatedKey:
        raise self._read_only()

    def list_api_keys(self, workspace: str | None = None) -> list[ApiKeyInfo]:
        raise self._read_only()

    def revoke_api_key(self, key_id: str, revoked_by: str = "") -> ApiKeyInfo:
        raise self._read_only()
