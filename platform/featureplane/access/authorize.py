"""Who is running a command, and whether they may.

With ``auth: {enabled: true}`` in featureplane.yaml, CLI actions and Dagster materializations check the
caller's role on the workspace. The caller is the service account of ``$FEATUREPLANE_API_KEY`` when it is
set (CI, Dagster deployments), otherwise the user ``$FEATUREPLANE_USER`` or, failing that, the operating
system's user name. With auth off (the default) nothing is checked: one person on one machine.

These checks guard against mistakes and make roles visible; they are only as strong as the protection of
the registry database itself, which anyone who can write it can change.
"""

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING

from featureplane.access.base import AccessError, AccessStore, Identity
from featureplane.access.roles import ALL_WORKSPACES, ROLES

if TYPE_CHECKING:
    from featureplane.config import Config

ENV_USER = "FEATUREPLANE_USER"
ENV_API_KEY = "FEATUREPLANE_API_KEY"
ROLE_ORDER = ("viewer", "consumer", "operator", "editor", "owner")


class AccessDenied(AccessError):
    """The caller does not hold a role that allows the action."""


def server_enforced(config: Config) -> bool:
    """Whether a featureplane server checks every call (``registry: {type: remote}``)."""
    return config.registry.type == "remote"


def auth_enabled(config: Config) -> bool:
    """Whether this process checks roles itself: ``auth.enabled``, unless a server checks them."""
    if server_enforced(config):
        return False
    value = (config.auth or {}).get("enabled", False)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "enabled")
    return bool(value)


def user_name() -> str:
    name = os.environ.get(ENV_USER)
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): the numeric id still names someone
        return f"uid{os.getuid()}"


def caller(store: AccessStore) -> Identity:
    """The identity of whoever runs this process."""
    key = os.environ.get(ENV_API_KEY)
    if key:
        identity = store.authenticate(key)
        if identity is None:
            raise AccessDenied(f"${ENV_API_KEY} is not an active API key (unknown, malformed or revoked)")
        return identity
    return store.identity(f"user:{user_name()}")


def least_role(permission: str) -> str:
    return next((r for r in ROLE_ORDER if permission in ROLES[r]), "owner")


def authorize(config: Config, workspace: str, permission: str, action: str) -> str | None:
    """Raise AccessDenied unless the caller may ``permission`` on ``workspace``; return the caller's
    principal id (None when auth is off)."""
    if not auth_enabled(config):
        return None
    from featureplane.access import open_access_store

    store = open_access_store(config)
    try:
        identity = caller(store)
        if identity.can(permission, workspace):
            return identity.principal_id
        if permission == "manage_access" and not any(
            b.principal_id.startswith("user:") for b in store.bindings()
        ):
            return identity.principal_id  # bootstrap: nobody holds a role yet, so the first owner is named
    finally:
        store.close()
    role = least_role(permission)
    scope = "every workspace (*)" if workspace == ALL_WORKSPACES else f"workspace {workspace!r}"
    raise AccessDenied(
        f"{identity.principal_id} may not {action}: that needs the {role} role on {scope}; an owner can grant "
        f"it with `featureplane access assign-role --workspace {workspace} --role {role} "
        f"--user {identity.principal_id.split(':', 1)[-1]}`"
    )
