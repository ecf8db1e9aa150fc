"""Building the lookup service from featureplane.yaml (shared by the HTTP server and Lambda).

Registry snapshots come from the registry itself, or, when ``serving.registry_snapshot`` is set, from
the serving snapshot document that ``featureplane apply`` exports there (how Lambda serves).

The ``serving`` section::

    serving:
      registry_refresh_seconds: 5   # how soon an apply (and a key revocation) takes effect
      auth: true                    # API keys required (default); false only for local use
      max_batch_rows: 500           # rows per get-features-batch request
      max_ingest_records: 10000     # records per ingest request
      max_body_bytes: 1000000
      max_connections: 512          # `featureplane serve` only (see serving.http_server)
      request_timeout_seconds: 10
      idle_timeout_seconds: 75
"""

from __future__ import annotations

import logging
import os
from typing import Any

from featureplane.config import Config, ConfigError
from featureplane.serving.metrics import ServingMetrics
from featureplane.serving.monitor import attach_monitor
from featureplane.serving.service import LookupService
from featureplane.serving.snapshot import SnapshotCache, WorkspaceSource

log = logging.getLogger("featureplane.serving")


def workspace_source(config: Config) -> WorkspaceSource:
    location = (config.serving or {}).get("registry_snapshot")
    if location:
        from featureplane.registry.snapshot import SnapshotDocumentSource, open_location

        return SnapshotDocumentSource(open_location(str(location), config.root))
    from featureplane.registry import open_registry

    return open_registry(config)


def auth_enabled(config: Config) -> bool:
    """Whether the lookup API requires API keys (``serving.auth``, default true)."""
    value: Any = (config.serving or {}).get("auth", True)
    if isinstance(value, dict):
        value = value.get("enabled", True)
    if isinstance(value, str) and value.strip().lower() in ("false", "off", "none", "disabled", "no"):
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "on", "api_key", "api_keys", "yes"):
        return True
    if not isinstance(value, bool):
        raise ConfigError(f"{config.path}: serving.auth must be true or false, got {value!r}")
    return value


def _number(config: Config, name: str, default: float) -> float:
    value = (config.serving or {}).get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{config.path}: serving.{name} must be a number, got {value!r}") from None
    if number < 0:
        raise ConfigError(f"{config.path}: serving.{name} must not be negative, got {value!r}")
    return number


def create_lookup_service(config: Config) -> LookupService:
    from featureplane.ingest.log import IngestLog, ingest_log_root
    from featureplane.ingest.service import Ingestor
    from featureplane.online_stores import create_online_store

    refresh = _number(config, "registry_refresh_seconds", 5)
    source = workspace_source(config)
    snapshots = SnapshotCache(source, refresh)
    online = create_online_store(config.online_store, config.resolve)
    metrics = ServingMetrics()
    verifier = None
    if auth_enabled(config):
        from featureplane.access.verifier import KeyVerifier

        if hasattr(source, "api_keys"):  # a serving snapshot document: its keys, refreshed with it
            from featureplane.access.base import SnapshotAccessStore

            store = SnapshotAccessStore(source.api_keys)
        else:
            from featureplane.access import open_access_store

            store = open_access_store(config)
        verifier = KeyVerifier(store, cache_seconds=refresh)
    # A Lambda container's disk does not outlive it: there, records for the offline store are only
    # accepted when offline_store.ingest_log names durable storage (an EFS mount) explicitly.
    on_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    durable = not on_lambda or "ingest_log" in config.offline_store
    ingestor = Ingestor(
        online,
        IngestLog(ingest_log_root(config)) if durable else None,
        max_records=int(_number(config, "max_ingest_records", 10_000)),
        on_store_call=lambda operation, seconds: metrics.store_latency.observe(seconds, operation),
    )
    service = LookupService(
        snapshots,
        online,
        verifier=verifier,
        ingestor=ingestor,
        metrics=metrics,
        max_body_bytes=int(_number(config, "max_body_bytes", 1_000_000)),
        max_batch_rows=int(_number(config, "max_batch_rows", 500)),
    )
    attach_monitor(service, config)
    try:  # records a server that died left in the ingest log but not online: before the first lookup
        service.replay_ingest_log()
    except Exception:
        log.exception("replaying the ingest log into the online store failed; retried periodically")
    return service
