"""Building the lookup service from featureplane.yaml (shared by the HTTP server and Lambda)."""

from __future__ import annotations

from featureplane.config import Config
from featureplane.serving.core import LookupService
from featureplane.serving.monitor import attach_monitor
from featureplane.serving.snapshot import SnapshotCache


def create_lookup_service(config: Config) -> LookupService:
    from featureplane.online_stores import create_online_store
    from featureplane.registry import open_registry

    serving = config.serving or {}
    snapshots = SnapshotCache(open_registry(config), float(serving.get("registry_refresh_seconds", 5)))
    online = create_online_store(config.online_store, config.resolve)
    service = LookupService(snapshots, online, max_body_bytes=int(serving.get("max_body_bytes", 1_000_000)))
    attach_monitor(service, config)
    return service
