"""The access store interface, API key format and the identity a verified key carries.

An API key reads ``fpk_<id>_<secret>``. The id is public (it is what ``api-key list`` shows and
``api-key revoke`` takes); the whole key is stored only as its SHA-256 digest. Keys are 256-bit random
tokens, so a fast digest is enough: there is nothing to brute-force that a slow hash would protect.
Session tokens (``fps_<id>_<secret>``, what ``featureplane login`` gets from the server) are made and
stored the same way. Passwords are people's choices, so they are stored as argon2id hashes
(``passwords.py``).

Besides keys and roles, a store keeps the server's accounts: users (with a password hash and an admin
flag), named service accounts, login sessions and the audit log. A store that does not keep them (the
serving snapshot) raises NotImplementedError.
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
SESSION_PREFIX = "fps"
_SESSION = re.compile(r"^fps_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})$")
# User and service account names: what a person types, and nothing a query or a shell could misread.
PRINCIPAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")


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


@dataclass(frozen=True)
class UserInfo:
    """A person who can sign in (when a password is set) and hold roles. Never the password hash."""

    name: str
    admin: bool
    created_at: str
    created_by: str
    disabled_at: str | None = None
    has_password: bool = False

    @property
    def principal_id(self) -> str:
        return f"user:{self.name}"

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class ServiceAccountInfo:
    """A principal for machines (CI, lookup clients) that acts through its API keys."""

    id: str
    name: str
    description: str
    created_at: str
    created_by: str
    disabled_at: str | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class SessionInfo:
    """A login session of a user; what may be shown about it (never its token)."""

    id: str
    user: str
    created_at: str
    expires_at: str
    revoked_at: str | None = None
    source_ip: str = ""

    @property
    def principal_id(self) -> str:
        return f"user:{self.user}"


@dataclass(frozen=True)
class CreatedSession:
    info: SessionInfo
    token: str


@dataclass(frozen=True)
class AuditEvent:
    """One entry of the audit log: who (``actor``, a principal id) did what, when and from where."""

    id: int
    at: str
    actor: str
    action: str
    workspace: str
    target: str
    detail: str
    source_ip: str


def check_principal_name(name: str, what: str = "user name") -> str:
    if not isinstance(name, str) or not PRINCIPAL_NAME.fullmatch(name):
        raise AccessError(
            f"{what} {name!r:.80} is not valid: use up to 128 letters, digits and . _ @ + - "
            "(starting with a letter or digit)"
        )
    return name


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


def new_session_token() -> tuple[str, str]:
    """A new (session id, full token)."""
    session_id = secrets.token_hex(8)
    return session_id, f"{SESSION_PREFIX}_{session_id}_{secrets.token_urlsafe(32)}"


def session_id_of(token: str) -> str | None:
    """The id of a well-formed session token, or None."""
    match = _SESSION.match(token)
    return match.group(1) if match else None


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

    # -- users ------------------------------------------------------------------------------------

    def create_user(
        self, name: str, password: str | None = None, *, admin: bool = False, created_by: str = ""
    ) -> UserInfo:
        """A new user (``user:<name>``), with an argon2id hash of ``password`` if given. A user that
        so far only held roles (``assign_role`` creates the principal) gets its account; AccessError if
        the account exists or the name or password is not acceptable."""
        raise NotImplementedError(f"{type(self).__name__} does not keep users")

    def user(self, name: str) -> UserInfo:
        """The user of that name; AccessError if there is none."""
        raise NotImplementedError(f"{type(self).__name__} does not keep users")

    def list_users(self) -> list[UserInfo]:
        """Every user, disabled ones too, by name."""
        raise NotImplementedError(f"{type(self).__name__} does not keep users")

    def disable_user(self, name: str, disabled_by: str = "") -> UserInfo:
        """Disable a user: their sessions are revoked and their keys stop working, in one transaction."""
        raise NotImplementedError(f"{type(self).__name__} does not keep users")

    def set_password(self, name: str, password: str) -> None:
        """Replace the user's password (stored as an argon2id hash)."""
        raise NotImplementedError(f"{type(self).__name__} does not keep users")

    def verify_password(self, name: str, password: str) -> UserInfo | None:
        """The user if ``password`` is theirs and they are active; None otherwise (an unknown user
        costs the same hash as a known one, so timing does not tell which names exist)."""
        raise NotImplementedError(f"{type(self).__name__} does not keep users")

    # -- service accounts -------------------------------------------------------------------------

    def create_service_account(
        self, name: str, *, description: str = "", created_by: str = ""
    ) -> ServiceAccountInfo:
        """A named service account ``service_account:<name>`` with no roles and no keys yet."""
        raise NotImplementedError(f"{type(self).__name__} does not keep service accounts")

    def service_account(self, account_id: str) -> ServiceAccountInfo:
        """A service account by id (``service_account:<name>``) or bare name; AccessError if unknown."""
        raise NotImplementedError(f"{type(self).__name__} does not keep service accounts")

    def list_service_accounts(self) -> list[ServiceAccountInfo]:
        """Every service account (those ``create_api_key`` made too), oldest first."""
        raise NotImplementedError(f"{type(self).__name__} does not keep service accounts")

    def add_api_key(self, principal_id: str, *, description: str = "", created_by: str = "") -> CreatedKey:
        """A new key for an existing, active principal; it acts with the principal's roles."""
        raise NotImplementedError(f"{type(self).__name__} does not keep service accounts")

    # -- sessions ---------------------------------------------------------------------------------

    def create_session(self, user: str, ttl_seconds: float, *, source_ip: str = "") -> CreatedSession:
        """A login session for an active user, valid for ``ttl_seconds``; the token is returned only
        here and stored as its SHA-256 digest."""
        raise NotImplementedError(f"{type(self).__name__} does not keep sessions")

    def session(self, token: str) -> SessionInfo | None:
        """The session of a token: None if it is malformed, unknown, expired, revoked or its user is
        disabled."""
        raise NotImplementedError(f"{type(self).__name__} does not keep sessions")

    def revoke_session(self, token_or_id: str) -> None:
        """End a session (by its token or its id); ending an ended or unknown one does nothing."""
        raise NotImplementedError(f"{type(self).__name__} does not keep sessions")

    def revoke_user_sessions(self, user: str) -> int:
        """End every open session of a user; returns how many were open."""
        raise NotImplementedError(f"{type(self).__name__} does not keep sessions")

    # -- audit log --------------------------------------------------------------------------------

    def record_audit(
        self,
        actor: str,
        action: str,
        workspace: str = "",
        target: str = "",
        detail: str = "",
        source_ip: str = "",
    ) -> AuditEvent:
        """Append an event to the audit log (it is never changed afterwards)."""
        raise NotImplementedError(f"{type(self).__name__} does not keep an audit log")

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
        """Audit events matching every filter given, newest first: by actor, action, workspace, at or
        after ``since`` (ISO-8601), with an id below ``before_id`` (to page back), at most ``limit``."""
        raise NotImplementedError(f"{type(self).__name__} does not keep an audit log")

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
