"""Access control: principals, their API keys, and the roles they hold on workspaces.

A *principal* is who acts: today a service account that owns an API key (one per ``api-key create``);
later also people using the CLI. A *role binding* gives a principal a role on a workspace, and a role
is a set of permissions (``roles.py``). The lookup API authenticates a request by its key, then asks
whether the key's principal holds a permission on the requested workspace. Everything is stored in the
registry's database (SQLite or PostgreSQL), keys only as hashes. The package face and the SQLite store
use the standard library only: the lookup service imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from featureplane.access.base import (
    AccessError,
    AccessStore,
    ApiKeyInfo,
    CreatedKey,
    Identity,
    RoleBinding,
)
from featureplane.access.roles import ROLES, Permission, check_role

if TYPE_CHECKING:
    from featureplane.config import Config


def open_access_store(config: Config) -> AccessStore:
    """The access store that lives beside the registry named in featureplane.yaml (in PostgreSQL, on
    the registry's connection pool)."""
    kind = config.registry.get("type", "sqlite")
    if kind == "sqlite":
        from featureplane.access.sqlite import SQLiteAccessStore

        return SQLiteAccessStore(config.registry_path)
    if kind == "postgres":
        from featureplane.access.postgres import PostgresAccessStore

        return PostgresAccessStore.from_config(config)
    if kind == "remote":
        from featureplane.access.remote import RemoteAccessStore
        from featureplane.registry.client import client_for

        return RemoteAccessStore(client_for(config.registry))
    raise ValueError(
        f"{config.path}: registry type {kind!r} has no access store (expected sqlite, postgres or remote)"
    )


def create_api_key(
    config: Config, workspace: str, role: str, description: str = "", created_by: str = ""
) -> str:
    """Create an API key for ``role`` on ``workspace`` and return the secret (shown only this once).

    The workspace must exist. This is what ``featureplane api-key create`` runs.
    """
    from featureplane.registry import open_registry

    registry = open_registry(config)
    try:
        registry.get_workspace(workspace)
    finally:
        registry.close()
    store = open_access_store(config)
    try:
        return store.create_api_key(workspace, role, description=description, created_by=created_by).secret
    finally:
        store.close()


__all__ = [
    "ROLES",
    "AccessError",
    "AccessStore",
    "ApiKeyInfo",
    "CreatedKey",
    "Identity",
    "Permission",
    "RoleBinding",
    "check_role",
    "create_api_key",
    "open_access_store",
]
