"""Building the lookup service from featureplane.yaml (shared by the HTTP server and Lambda).

Registry snapshots come from the registry itself, or, when ``serving.registry_snapshot`` is set, from
the serving snapshot document that ``featureplane apply`` exports there (how Lambda serves).
"""

from __future__ import annotations

from featureplane.config import Config
from featureplane.serving.core import LookupService
from featureplane.serving.monitor import attach_monitor
from featureplane.serving.snapshot import SnapshotCache, WorkspaceSource


def workspace_source(config: Config) -> WorkspaceSource:
    location = (config.serving or {}).get("registry_snapshot")
    if location:
        from featureplane.serving.registry_snapshot import SnapshotDocumentSource, open_location

        return SnapshotDocumentSource(open_location(str(location), config.root))
    from featureplane.registry import open_registry

    return open_registry(config)


def create_lookup_service(config: Config) -> LookupService:
    from featureplane.online_stores import create_online_store

    serving = config.serving or {}
    snapshots = SnapshotCache(workspace_source(config), float(serving.get("registry_refresh_seconds", 5)))
    online = create_online_store(config.online_store, config.resolve)
    service = LookupService(snapshots, online, max_body_bytes=int(serving.get("max_body_bytes", 1_000_000)))
    attach_monitor(service, config)
    return service
