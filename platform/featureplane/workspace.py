"""The interactive SDK: workspaces, feature views and services from a notebook.

>>> ws = featureplane.get_workspace("prod")
>>> training = ws.get_feature_service("fraud_detection").get_historical_features(spine, timestamp_key="ts")
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.config import load_config
from featureplane.offline_stores.base import RetrievalPart
from featureplane.runtime import Runtime
from featureplane.specs import FeatureServiceSpec, FeatureViewSpec, parse_time

if TYPE_CHECKING:
    import pandas as pd

    from featureplane.registry.base import WorkspaceState
    from featureplane.serving.core import LookupService


class RetrievalError(ValueError):
    pass


def get_workspace(name: str, *, config: str | Path | None = None) -> Workspace:
    """A workspace of the registry named in featureplane.yaml (found as the CLI finds it)."""
    runtime = Runtime(load_config(config))
    return Workspace(runtime, runtime.registry.load(name))


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, str):
        return parse_time(value)
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise RetrievalError(f"expected a datetime, got {value!r}")
    return parse_time(value.isoformat())


def _check_spine(spine: Any, timestamp_key: str, keys: list[str], what: str) -> None:
    import pandas as pd

    if not isinstance(spine, pd.DataFrame):
        raise RetrievalError(f"{what}: the spine must be a pandas DataFrame, got {type(spine).__name__}")
    missing = [c for c in [timestamp_key, *keys] if c not in spine.columns]
    if missing:
        raise RetrievalError(
            f"{what}: the spine is missing column(s) {', '.join(missing)} (it has {', '.join(map(str, spine.columns))}); "
            f"it needs the join keys {', '.join(keys)} and the timestamp column {timestamp_key!r}"
        )


class Workspace:
    def __init__(self, runtime: Runtime, state: WorkspaceState) -> None:
        self.runtime = runtime
        self.state = state
        self._lookup: LookupService | None = None

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def live(self) -> bool:
        return self.state.live

    def __repr__(self) -> str:
        return f"Workspace({self.name!r}, {'live' if self.live else 'development'}, version {self.state.version})"

    def list_feature_views(self) -> list[str]:
        return sorted(self.state.definitions.feature_views)

    def list_feature_services(self) -> list[str]:
        return sorted(self.state.definitions.feature_services)

    def get_feature_view(self, name: str) -> FeatureViewHandle:
        return FeatureViewHandle(self, self.state.feature_view(name))

    def get_feature_service(self, name: str) -> FeatureServiceHandle:
        return FeatureServiceHandle(self, self.state.feature_service(name))

    def lookup_service(self) -> LookupService:
        """The lookup API's core over this workspace (no HTTP), for online reads from Python."""
        if self._lookup is None:
            from featureplane.serving.core import LookupService
            from featureplane.serving.snapshot import SnapshotCache

            self._lookup = LookupService(SnapshotCache(self.runtime.registry, 0), self.runtime.online_store)
        return self._lookup

    def _parts(self, selections: list[tuple[FeatureViewSpec, list[str]]]) -> list[RetrievalPart]:
        parts = []
        for view, features in selections:
            if not view.offline:
                raise RetrievalError(f"feature view {view.name!r} has offline=False: it has no training data")
            if not self.live:
                raise RetrievalError(
                    f"workspace {self.name!r} is a development workspace and materializes nothing; "
                    "compute from the sources instead (from_source=True)"
                )
            parts.append(RetrievalPart(view=view, table_id=self.state.table_id(view.name), features=features))
        return parts

    def _historical(
        self, spine: pd.DataFrame, timestamp_key: str, selections: list[tuple[FeatureViewSpec, list[str]]]
    ) -> pd.DataFrame:
        """A point-in-time training set; realtime views run row by row over the joined spine."""
        offline = self.runtime.offline_store
        if not any(view.is_realtime for view, _ in selections):
            return offline.get_historical_features(spine, timestamp_key, self._parts(selections))
        from featureplane.realtime_retrieval import RealtimeRetrievalError, historical_features

        try:
            return historical_features(
                spine,
                timestamp_key,
                selections,
                self.state.definitions.feature_views,
                self._parts,
                lambda frame, parts: offline.get_historical_features(frame, timestamp_key, parts),
            )
        except RealtimeRetrievalError as exc:
            raise RetrievalError(str(exc)) from None


class FeatureViewHandle:
    def __init__(self, workspace: Workspace, spec: FeatureViewSpec) -> None:
        self.workspace = workspace
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"FeatureView({self.name!r} in {self.workspace.name!r})"

    def get_historical_features(self, spine: pd.DataFrame, timestamp_key: str = "ts") -> pd.DataFrame:
        """The spine's rows with one column per feature, ``<view>__<feature>``, point-in-time correct."""
        _check_spine(spine, timestamp_key, self.spec.join_key_names, f"feature view {self.name!r}")
        return self.workspace._historical(spine, timestamp_key, [(self.spec, self.spec.feature_names)])

    def get_features_in_range(self, start: Any, end: Any) -> pd.DataFrame:
        """Feature rows valid at some time in ``[start, end)``, with ``_valid_from`` and ``_valid_to``.

        For an aggregate view, each entity's window values with the interval in which they hold."""
        if self.spec.is_realtime:
            raise RetrievalError(
                f"feature view {self.name!r} is computed per request and stores no values; use "
                "get_historical_features with a spine that carries its request fields"
            )
        (part,) = self.workspace._parts([(self.spec, self.spec.feature_names)])
        return self.workspace.runtime.offline_store.features_in_range(
            part.table_id, self.spec, _as_datetime(start), _as_datetime(end)
        )

    def get_online_features(
        self,
        join_keys: dict[str, Any],
        include_metadata: bool = False,
        request_context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The view's current online values for one entity, ``{"<view>.<feature>": value}``
        (``request_context`` carries a realtime view's request fields)."""
        from featureplane.serving.snapshot import build_snapshot

        state = self.workspace.state
        service = FeatureServiceSpec(name=f"__view_{self.name}", features=[_all_features(self.spec)])
        snapshot = build_snapshot(_with_service(state, service))
        return _online(self.workspace, snapshot, service.name, join_keys, include_metadata, request_context)


class FeatureServiceHandle:
    def __init__(self, workspace: Workspace, spec: FeatureServiceSpec) -> None:
        self.workspace = workspace
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"FeatureService({self.name!r} in {self.workspace.name!r})"

    def _selections(self) -> list[tuple[FeatureViewSpec, list[str]]]:
        return [(self.workspace.state.feature_view(part.view), part.features) for part in self.spec.features]

    def get_historical_features(self, spine: pd.DataFrame, timestamp_key: str = "ts") -> pd.DataFrame:
        """The spine's rows with the service's features, ``<view>__<feature>``, point-in-time correct."""
        selections = self._selections()
        keys = list(dict.fromkeys(k for view, _ in selections for k in view.join_key_names))
        _check_spine(spine, timestamp_key, keys, f"feature service {self.name!r}")
        return self.workspace._historical(spine, timestamp_key, selections)

    def get_online_features(
        self,
        join_keys: dict[str, Any],
        include_metadata: bool = False,
        request_context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The service's current online feature vector, ``{"<view>.<feature>": value}``
        (``request_context`` carries its realtime views' request fields)."""
        from featureplane.serving.snapshot import build_snapshot

        snapshot = build_snapshot(self.workspace.state)
        return _online(self.workspace, snapshot, self.name, join_keys, include_metadata, request_context)


def _all_features(view: FeatureViewSpec) -> Any:
    from featureplane.specs import ServiceFeatures

    return ServiceFeatures(view=view.name, features=view.feature_names)


def _with_service(state: WorkspaceState, service: FeatureServiceSpec) -> WorkspaceState:
    import copy

    clone = copy.copy(state)
    clone.definitions = copy.copy(state.definitions)
    clone.definitions.feature_services = {**state.definitions.feature_services, service.name: service}
    return clone


def _online(
    workspace: Workspace,
    snapshot: Any,
    service_name: str,
    join_keys: dict[str, Any],
    include_metadata: bool,
    request_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from featureplane.serving.core import ApiError

    if not workspace.live:
        raise RetrievalError(
            f"workspace {workspace.name!r} is a development workspace: it serves nothing online"
        )
    service = snapshot.services[service_name]
    options = dict.fromkeys(("includeNames", "includeEffectiveTimes", "includeServingStatus"), True)
    try:
        answer = workspace.lookup_service().read_features(service, join_keys, options, request_context)
    except ApiError as exc:
        raise RetrievalError(exc.message) from None
    values: dict[str, Any] = {}
    for meta, dtype, raw in zip(
        answer["metadata"]["features"], service.feature_types, answer["result"]["features"], strict=True
    ):
        value = int(raw) if (raw is not None and dtype.name == "int64") else raw
        values[meta["name"]] = (
            {"value": value, **{k: v for k, v in meta.items() if k != "name"}} if include_metadata else value
        )
    return values
