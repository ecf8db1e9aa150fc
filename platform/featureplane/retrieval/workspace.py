"""The interactive SDK: workspaces, feature views and services from a notebook.

>>> ws = featureplane.get_workspace("prod")
>>> training = ws.get_feature_service("fraud_detection").get_historical_features(spine, timestamp_key="ts")
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.config import load_config
from featureplane.definitions.specs import FeatureServiceSpec, FeatureViewSpec, parse_time
from featureplane.offline_stores.base import RetrievalPart
from featureplane.runtime import Runtime

if TYPE_CHECKING:
    import pandas as pd

    from featureplane.registry.base import WorkspaceState
    from featureplane.serving.service import LookupService


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
            from featureplane.serving.service import LookupService
            from featureplane.serving.snapshot import SnapshotCache

            self._lookup = LookupService(SnapshotCache(self.runtime.registry, 0), self.runtime.online_store)
        return self._lookup

    def _parts(
        self,
        selections: list[tuple[FeatureViewSpec, list[str]]],
        spine: pd.DataFrame | None = None,
        timestamp_key: str = "ts",
        from_source: bool = False,
    ) -> list[RetrievalPart]:
        parts = []
        for view, features in selections:
            table_id = self.state.table_id(view.name)
            if from_source:
                data = self._from_source(view, spine, timestamp_key)
                parts.append(RetrievalPart(view=view, table_id=table_id, features=features, data=data))
                continue
            if not view.offline:
                raise RetrievalError(
                    f"feature view {view.name!r} has offline=False: it has no training data "
                    "(compute it from the sources with from_source=True)"
                )
            if not self.live:
                raise RetrievalError(
                    f"workspace {self.name!r} is a development workspace and materializes nothing; "
                    "compute from the sources instead (from_source=True)"
                )
            parts.append(RetrievalPart(view=view, table_id=table_id, features=features))
        tables = [p.view.name for p in parts if p.view.kind == "table"]
        if tables:  # ingested records still in the log become part of the offline tables first
            from featureplane.ingest.offline import flush_ingest_log

            flush_ingest_log(self.runtime, self.state, tables)
        return parts

    def _from_source(self, view: FeatureViewSpec, spine: pd.DataFrame | None, timestamp_key: str) -> Any:
        """Run the view's transformation over the whole partitions that the spine's rows can see."""
        from featureplane.materialization.partitions import align_down

        if not view.is_batch or view.schedule is None:
            raise RetrievalError(
                f"feature view {view.name!r} is not a batch view: it cannot be computed from sources"
            )
        assert spine is not None
        stamps = spine[timestamp_key]
        latest = _as_datetime(stamps.max())
        earliest = _as_datetime(stamps.min())
        start = align_down(earliest - view.ttl, view.schedule) if view.ttl else (view.start or earliest)
        if view.start is not None:
            start = max(start, view.start)
        start = align_down(start, view.schedule)
        end = align_down(latest, view.schedule) + view.schedule
        return self.runtime.engine.run_transformation(view, self.state.definitions.sources, start, end)

    def _historical(
        self,
        spine: pd.DataFrame,
        timestamp_key: str,
        selections: list[tuple[FeatureViewSpec, list[str]]],
        from_source: bool = False,
    ) -> pd.DataFrame:
        """A point-in-time training set; realtime views run row by row over the joined spine."""
        offline = self.runtime.offline_store

        def parts(chosen: list[tuple[FeatureViewSpec, list[str]]]) -> list[RetrievalPart]:
            return self._parts(chosen, spine, timestamp_key, from_source)

        if not any(view.is_realtime for view, _ in selections):
            return offline.get_historical_features(spine, timestamp_key, parts(selections))
        from featureplane.retrieval.realtime import RealtimeRetrievalError, historical_features

        try:
            return historical_features(
                spine,
                timestamp_key,
                selections,
                self.state.definitions.feature_views,
                parts,
                lambda frame, chosen: offline.get_historical_features(frame, timestamp_key, chosen),
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

    def get_historical_features(
        self, spine: pd.DataFrame, timestamp_key: str = "ts", *, from_source: bool = False
    ) -> pd.DataFrame:
        """The spine's rows with one column per feature, ``<view>__<feature>``, point-in-time correct.

        ``from_source=True`` computes the features from the view's sources instead of the offline store
        (works in development workspaces and before a view is materialized)."""
        _check_spine(spine, timestamp_key, self.spec.join_key_names, f"feature view {self.name!r}")
        return self.workspace._historical(
            spine, timestamp_key, [(self.spec, self.spec.feature_names)], from_source
        )

    def run_transformation(self, start: Any, end: Any) -> pd.DataFrame:
        """The view's transformation output for ``[start, end)``, computed now from its sources."""
        from featureplane.offline_stores.base import to_pandas

        table = self.workspace.runtime.engine.run_transformation(
            self.spec, self.workspace.state.definitions.sources, _as_datetime(start), _as_datetime(end)
        )
        return to_pandas(table)

    def get_features_in_range(self, start: Any, end: Any) -> pd.DataFrame:
        """Feature rows valid at some time in ``[start, end)``, with ``_valid_from`` and ``_valid_to``.

        For an aggregate view (batch or stream), each entity's window values with the interval in which
        they hold."""
        if self.spec.is_realtime:
            raise RetrievalError(
                f"feature view {self.name!r} is computed per request and stores no values; use "
                "get_historical_features with a spine that carries its request fields"
            )
        (part,) = self.workspace._parts([(self.spec, self.spec.feature_names)])
        return self.workspace.runtime.offline_store.features_in_range(
            part.table_id, self.spec, _as_datetime(start), _as_datetime(end)
        )

    def ingest(self, df: Any) -> dict[str, int]:
        """Write a DataFrame's rows to this FeatureTable, as the ingest API does: every row is checked
        first (a bad row writes nothing), the online store keeps the newest row per entity, and the
        offline store gets every row. Returns how many rows each store took."""
        from featureplane.ingest.log import IngestLog, ingest_log_root
        from featureplane.ingest.offline import flush_ingest_log
        from featureplane.ingest.records import RecordError, ingest_endpoints
        from featureplane.ingest.service import Ingestor

        if self.spec.kind != "table":
            raise RetrievalError(
                f"feature view {self.name!r} is a {self.spec.kind} view; only FeatureTables take ingested rows"
            )
        if not self.workspace.live:
            raise RetrievalError(
                f"workspace {self.workspace.name!r} is a development workspace: it stores no feature data"
            )
        records = [{"record": row} for row in _rows(df)]
        runtime, state = self.workspace.runtime, self.workspace.state
        ingest_log = IngestLog(ingest_log_root(runtime.config))
        try:
            ingestor = Ingestor(runtime.online_store, ingest_log, max_records=max(len(records), 1))
            result = ingestor.ingest(state.name, ingest_endpoints(state), {self.name: records})
        except RecordError as exc:
            raise RetrievalError(f"{exc} (rows are counted from 0); nothing was written") from None
        finally:
            ingest_log.close()
        if self.spec.offline:
            flush_ingest_log(runtime, state, [self.name])
        counts = result.counts.get(state.table_id(self.name))
        return {
            "records": len(records),
            "online": counts.online if counts else 0,
            "offline": counts.offline if counts else 0,
        }

    def delete_keys(self, keys: Any, online: bool = True, offline: bool = True) -> dict[str, Any]:
        """Delete these entities' rows from the view's offline and/or online store (Tecton's
        ``FeatureView.delete_keys``). ``keys``: a DataFrame of the join-key columns, dicts, tuples, or
        plain values for a single join key. Offline goes first, then online; keys without rows are
        no-ops, so running it again is safe. Returns what each store removed. With a remote registry
        the server deletes (and audits) it. See docs/data-lifecycle.md."""
        from featureplane.materialization.deletion import delete_keys, keys_from
        from featureplane.registry.remote import RemoteRegistry

        checked = keys_from(self.spec, keys)
        registry = self.workspace.runtime.registry
        if isinstance(registry, RemoteRegistry):
            names = self.spec.join_key_names
            rows = [dict(zip(names, key, strict=True)) for key in checked]
            return registry.delete_keys(self.workspace.name, self.name, rows, online=online, offline=offline)
        runtime, state = self.workspace.runtime, self.workspace.state
        return delete_keys(runtime, state, self.name, checked, online=online, offline=offline).to_json()

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

    def get_historical_features(
        self, spine: pd.DataFrame, timestamp_key: str = "ts", *, from_source: bool = False
    ) -> pd.DataFrame:
        """The spine's rows with the service's features, ``<view>__<feature>``, point-in-time correct.

        ``from_source=True`` computes every view from its sources instead of the offline store."""
        selections = self._selections()
        keys = list(dict.fromkeys(k for view, _ in selections for k in view.join_key_names))
        _check_spine(spine, timestamp_key, keys, f"feature service {self.name!r}")
        return self.workspace._historical(spine, timestamp_key, selections, from_source)

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


def _rows(df: Any) -> list[dict[str, Any]]:
    """Plain Python rows of a pandas DataFrame or Arrow table, with missing values (NaN, NaT) as None."""
    import pyarrow as pa

    if isinstance(df, pa.Table):
        return df.to_pylist()
    import numpy as np
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise RetrievalError(f"ingest() takes a pandas DataFrame, got {type(df).__name__}")

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, list | tuple | dict):
            return value
        return None if pd.isna(value) else value

    return [{k: plain(v) for k, v in row.items()} for row in df.to_dict("records")]


def _all_features(view: FeatureViewSpec) -> Any:
    from featureplane.definitions.specs import ServiceFeatures

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
    from featureplane.serving.protocol import ApiError

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
