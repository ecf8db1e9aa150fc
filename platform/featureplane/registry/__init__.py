"""The registry: the applied state of each workspace, versioned, and plans against it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from featureplane.config import Config
    from featureplane.registry.base import Registry


def open_registry(config: Config) -> Registry:
    """The registry named by ``registry`` in featureplane.yaml. A PostgreSQL registry shares the
    process's connection pool with every other store on the same database; ``close()`` releases it."""
    kind = config.registry.get("type", "sqlite")
    if kind == "sqlite":
        from featureplane.registry.sqlite import SQLiteRegistry

        return SQLiteRegistry(config.registry_path)
    if kind == "postgres":
        from featureplane.registry.postgres import PostgresRegistry

        return PostgresRegistry.from_config(config)
    if kind == "remote":
        from featureplane.registry.client import client_for
        from featureplane.registry.remote import RemoteRegistry

        return RemoteRegistry(client_for(config.registry))
    raise ValueError(
        f"{config.path}: registry type {kind!r} is not supported (expected sqlite, postgres or remote)"
    )
