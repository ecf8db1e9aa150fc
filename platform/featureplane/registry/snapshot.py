"""The serving snapshot: what the lookup service needs from the registry, as one JSON document.

A lookup service in AWS Lambda cannot reach the registry's database. ``featureplane apply`` therefore
exports the applied state of the project's live workspaces to a configured location
(``serving.registry_snapshot`` in featureplane.yaml): a local path, or ``s3://bucket/key``. The lookup
service reads it through ``SnapshotDocumentSource``, which ``SnapshotCache`` uses in place of a registry,
and re-checks it in the background by its S3 ETag (a conditional GET) or its file modification time.

Standard library and boto3 only: this module is on the Lambda's cold-start path.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.config import CONFIG_FILE, Config, ConfigError, config_from_mapping
from featureplane.definitions.specs import DefinitionSet, from_dict, kind_of, to_dict
from featureplane.registry.base import WorkspaceInfo, WorkspaceNotFound, WorkspaceState

if TYPE_CHECKING:
    from featureplane.registry.base import Registry

log = logging.getLogger("featureplane.serving")

FORMAT = "featureplane-serving-snapshot"
FORMAT_VERSION = 1


class SnapshotDocumentError(RuntimeError):
    pass


# -- the document ----------------------------------------------------------------------------------


def state_to_json(state: WorkspaceState) -> dict[str, Any]:
    info = state.info
    data: dict[str, Any] = {
        "live": info.live,
        "version": info.version,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
    }
    if info.live:
        definitions: dict[str, list[dict[str, Any]]] = {}
        for spec in state.definitions.all():
            definitions.setdefault(kind_of(spec), []).append(to_dict(spec))
        data["definitions"] = definitions
        data["generations"] = dict(state.generations)
    return data


def state_from_json(name: str, data: dict[str, Any]) -> WorkspaceState:
    info = WorkspaceInfo(
        name=name,
        live=bool(data["live"]),
        version=int(data["version"]),
        created_at=str(data.get("created_at", "")),
        updated_at=str(data.get("updated_at", "")),
    )
    state = WorkspaceState(info=info, definitions=DefinitionSet())
    for kind, specs in (data.get("definitions") or {}).items():
        for spec in specs:
            state.definitions.add(from_dict(kind, spec))
    state.generations = {k: int(v) for k, v in (data.get("generations") or {}).items()}
    return state


def build_document(registry: Registry, project: str, keys: list[dict] | None = None) -> dict[str, Any]:
    """The snapshot of every workspace in the registry (development workspaces by name only, so the
    lookup service can say why they do not serve), and the active API keys (hashes and role bindings
    only) so that a lookup service reading the snapshot can authenticate requests."""
    workspaces: dict[str, Any] = {}
    for info in registry.list_workspaces():
        if info.live:
            workspaces[info.name] = state_to_json(registry.load(info.name))
        else:
            workspaces[info.name] = state_to_json(WorkspaceState(info=info))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "project": project,
        "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "workspaces": workspaces,
        "api_keys": keys or [],
    }


def parse_document(payload: bytes, where: str) -> dict[str, WorkspaceState]:
    return read_document(payload, where)[0]


def read_document(payload: bytes, where: str) -> tuple[dict[str, WorkspaceState], list[dict]]:
    """The workspaces and the API keys of a snapshot document."""
    try:
        document = json.loads(payload)
    except ValueError as exc:
        raise SnapshotDocumentError(f"{where}: not a JSON document: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SnapshotDocumentError(f"{where}: not a featureplane serving snapshot (no format {FORMAT!r})")
    if int(document.get("format_version", 0)) > FORMAT_VERSION:
        raise SnapshotDocumentError(
            f"{where}: snapshot format version {document['format_version']} is newer than this "
            f"featureplane understands ({FORMAT_VERSION}); upgrade the lookup service"
        )
    states = {name: state_from_json(name, data) for name, data in document["workspaces"].items()}
    return states, list(document.get("api_keys") or [])


# -- where it lives --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    payload: bytes | None  # None: unchanged since the tag given
    tag: str


class FileLocation:
    """A local file; its tag is the modification time and size. Written atomically (rename)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def fetch(self, tag: str | None = None) -> Fetched:
        try:
            stat = self.path.stat()
            current = f"{stat.st_mtime_ns}:{stat.st_size}"
            if current == tag:
                return Fetched(None, current)
            return Fetched(self.path.read_bytes(), current)
        except FileNotFoundError:
            raise SnapshotDocumentError(
                f"serving snapshot {self.path} does not exist: run `featureplane apply` (or "
                "`featureplane export-snapshot`) with serving.registry_snapshot set"
            ) from None

    def write(self, payload: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(payload)
        os.replace(temporary, self.path)


class S3Location:
    """An S3 object; its tag is the ETag, and a re-check is a conditional GET (304 when unchanged).

    The client honours the usual AWS settings (``AWS_REGION``, ``AWS_ENDPOINT_URL_S3`` ...)."""

    def __init__(self, uri: str, region: str | None = None) -> None:
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket or not key:
            raise SnapshotDocumentError(f"{uri!r} is not an S3 object URI (s3://bucket/key)")
        self.uri, self.bucket, self.key, self.region = uri, bucket, key, region
        self._client: Any = None

    def __str__(self) -> str:
        return self.uri

    @property
    def client(self) -> Any:
        if self._client is None:
            from featureplane.util.aws import client

            self._client = client("s3", region_name=self.region)
        return self._client

    def fetch(self, tag: str | None = None) -> Fetched:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if tag:
            kwargs["IfNoneMatch"] = tag
        try:
            response = self.client.get_object(**kwargs)
        except Exception as exc:
            error = getattr(exc, "response", {}).get("Error", {})
            if str(error.get("Code")) in ("304", "NotModified"):
                return Fetched(None, tag or "")
            if str(error.get("Code")) in ("NoSuchKey", "404", "NoSuchBucket"):
                raise SnapshotDocumentError(
                    f"serving snapshot {self.uri} does not exist: run `featureplane apply` (or "
                    "`featureplane export-snapshot`) with serving.registry_snapshot set"
                ) from None
            raise
        return Fetched(response["Body"].read(), response.get("ETag", ""))

    def write(self, payload: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key, Body=payload, ContentType="application/json")


def open_location(location: str, base: Path | None = None) -> FileLocation | S3Location:
    if location.startswith("s3://"):
        return S3Location(location)
    path = Path(os.path.expanduser(location))
    if not path.is_absolute() and base is not None:
        path = base / path
    return FileLocation(path)


def export_snapshot(
    registry: Registry, location: FileLocation | S3Location, project: str, keys: list[dict] | None = None
) -> dict[str, Any]:
    """Write the snapshot of every workspace in the registry (and the active API keys); returns it."""
    document = build_document(registry, project, keys)
    location.write(json.dumps(document, separators=(",", ":"), sort_keys=True).encode())
    log.info("exported the serving snapshot of %d workspace(s) to %s", len(document["workspaces"]), location)
    return document


# -- the source the lookup service reads -----------------------------------------------------------


class SnapshotDocumentSource:
    """A read-only stand-in for the registry, for ``SnapshotCache``: workspaces from the document.

    The document is read once when the source is created (a missing or invalid document fails then,
    with a clear error) and again by ``poll()`` when its ETag or modification time changed. ``poll`` runs
    on SnapshotCache's background thread; requests only read the parsed document in memory."""

    def __init__(self, location: FileLocation | S3Location) -> None:
        self.location = location
        self._lock = threading.Lock()
        self._tag: str | None = None
        self._states: dict[str, WorkspaceState] = {}
        self._keys: list[dict] = []
        self.poll()

    def poll(self) -> bool:
        """Re-read the document if it changed; True when it did. A broken new document is logged and the
        previous one kept."""
        with self._lock:
            fetched = self.location.fetch(self._tag)
            if fetched.payload is None:
                return False
            try:
                states, keys = read_document(fetched.payload, str(self.location))
            except SnapshotDocumentError:
                if not self._states:
                    raise
                log.exception("ignoring an unreadable serving snapshot at %s", self.location)
                return False
            self._states, self._keys, self._tag = states, keys, fetched.tag
            return True

    def api_keys(self) -> list[dict]:
        """The active API keys of the current document (hashes and role bindings)."""
        return self._keys

    @property
    def workspaces(self) -> list[str]:
        return sorted(self._states)

    def _state(self, name: str) -> WorkspaceState:
        state = self._states.get(name)
        if state is None:
            raise WorkspaceNotFound(name, self.workspaces)
        return state

    def version(self, name: str) -> int:
        return self._state(name).version

    def load(self, name: str) -> WorkspaceState:
        return self._state(name)

    def close(self) -> None:
        pass


# -- a Lambda function's configuration ------------------------------------------------------------

_LAMBDA_PREFIX = "FEATUREPLANE_"


def config_from_lambda_environment(env: Mapping[str, str]) -> Config:
    """The configuration of a featureplane AWS Lambda function (lookup or stream) without a bundled
    featureplane.yaml: the serving snapshot (this module's document), the DynamoDB online store and
    the serving settings from ``FEATUREPLANE_*`` variables (docs/lambda.md lists them)."""
    import tempfile

    snapshot = env.get("FEATUREPLANE_REGISTRY_SNAPSHOT")
    if not snapshot:
        raise ConfigError(
            "no configuration: set FEATUREPLANE_CONFIG to a bundled featureplane.yaml, or "
            "FEATUREPLANE_REGISTRY_SNAPSHOT (s3://bucket/key of the serving snapshot) and "
            "FEATUREPLANE_DYNAMODB_TABLE_PREFIX"
        )
    online: dict[str, Any] = {
        "type": "dynamodb",
        "region": env.get("FEATUREPLANE_DYNAMODB_REGION") or env.get("AWS_REGION"),
        "table_prefix": env.get("FEATUREPLANE_DYNAMODB_TABLE_PREFIX", "featureplane_"),
    }
    if env.get("FEATUREPLANE_DYNAMODB_ENDPOINT_URL"):
        online["endpoint_url"] = env["FEATUREPLANE_DYNAMODB_ENDPOINT_URL"]
    serving: dict[str, Any] = {"registry_snapshot": snapshot}
    for name, key, cast in (
        ("REGISTRY_REFRESH_SECONDS", "registry_refresh_seconds", float),
        ("MAX_BODY_BYTES", "max_body_bytes", int),
    ):
        value = env.get(_LAMBDA_PREFIX + name)
        if value:
            try:
                serving[key] = cast(value)
            except ValueError:
                raise ConfigError(f"{_LAMBDA_PREFIX}{name} must be a number, got {value!r}") from None
    serving.setdefault("registry_refresh_seconds", 30.0)
    # API keys are required unless this says false (e.g. behind IAM auth)
    if env.get(_LAMBDA_PREFIX + "AUTH"):
        serving["auth"] = env[_LAMBDA_PREFIX + "AUTH"]
    data_dir = Path(tempfile.gettempdir()) / "featureplane"
    raw = {
        "project": env.get("FEATUREPLANE_PROJECT", "featureplane"),
        "data_dir": str(data_dir),
        "online_store": online,
        "serving": serving,
    }
    return config_from_mapping(raw, Path.cwd() / CONFIG_FILE)
