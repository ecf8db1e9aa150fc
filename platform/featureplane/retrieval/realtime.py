"""Realtime feature views in training sets: the point-in-time values of the views they read, then the
view's function row by row over the spine, whose columns carry the request fields.

The function receives what it would receive online (the same Python types, checked the same way), and
``context.request_timestamp`` is the spine's timestamp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.definitions.transformation import (
    CONTEXT_PARAMETER,
    REQUEST_PARAMETER,
    RealtimeContext,
    load_python_function,
)
from featureplane.offline_stores.base import RetrievalPart

if TYPE_CHECKING:
    import pandas as pd

Selection = tuple[FeatureViewSpec, list[str]]


class RealtimeRetrievalError(ValueError):
    pass


def request_columns(selections: list[Selection]) -> list[str]:
    return list(dict.fromkeys(f.name for view, _ in selections for f in view.request_schema))


def historical_features(
    spine: pd.DataFrame,
    timestamp_key: str,
    selections: list[Selection],
    views: dict[str, FeatureViewSpec],
    parts_for: Any,
    join: Any,
) -> pd.DataFrame:
    """The spine with each selection's features (``<view>__<feature>``) in order, realtime views
    computed per row. ``parts_for(selections)`` makes retrieval parts and ``join(spine, parts)`` runs
    the offline point-in-time join."""
    import pandas as pd
    import pyarrow as pa

    from featureplane.serving.realtime import ComputeError, check_answer, request_value
    from featureplane.types import to_arrow

    missing = [c for c in request_columns(selections) if c not in spine.columns]
    if missing:
        raise RealtimeRetrievalError(
            f"the spine is missing request column(s) {', '.join(missing)} that realtime feature views read "
            f"(it has {', '.join(map(str, spine.columns))})"
        )
    # Every stored view the selections need, once, with all the features anyone reads.
    needed: dict[str, list[str]] = {}
    for view, features in selections:
        if view.is_realtime:
            for source in view.sources:
                needed[source] = views[source].feature_names
        else:
            needed.setdefault(view.name, [])
            needed[view.name] = list(dict.fromkeys([*needed[view.name], *features]))
    parts: list[RetrievalPart] = parts_for([(views[name], features) for name, features in needed.items()])
    joined = join(spine, parts).reset_index(drop=True)
    rows = len(joined)
    columns: dict[str, Any] = {}
    for view, features in selections:
        if not view.is_realtime:
            for feature in features:
                columns[f"{view.name}__{feature}"] = joined[f"{view.name}__{feature}"]
            continue
        assert view.transformation is not None
        function = load_python_function(view.transformation)
        inputs = _inputs(view, views, joined, spine, timestamp_key)
        outputs = [(f.name, f.type) for f in view.features]
        computed: list[list[Any]] = []
        for i in range(rows):
            try:
                request = {
                    f.name: request_value(f.name, inputs["request"][f.name][i], f.type)
                    for f in view.request_schema
                }
            except ComputeError as exc:
                raise RealtimeRetrievalError(f"spine row {i}: {exc.message}") from None
            arguments = []
            for parameter in view.transformation.parameters:
                if parameter == CONTEXT_PARAMETER:
                    arguments.append(RealtimeContext(inputs["timestamps"][i]))
                elif parameter == REQUEST_PARAMETER:
                    arguments.append(request)
                else:
                    arguments.append({name: values[i] for name, values in inputs[parameter].items()})
            try:
                answer = function(*arguments)
            except Exception as exc:
                raise RealtimeRetrievalError(
                    f"realtime feature view {view.name!r} failed on spine row {i}: {type(exc).__name__}: {exc}"
                ) from exc
            try:
                computed.append(check_answer(view.name, outputs, answer))
            except ComputeError as exc:
                raise RealtimeRetrievalError(f"spine row {i}: {exc.message}") from None
        by_feature = (
            dict(zip([n for n, _ in outputs], zip(*computed, strict=True), strict=True)) if computed else {}
        )
        for name, dtype in outputs:
            if name in features:
                array = pa.array(list(by_feature.get(name, ())), type=to_arrow(dtype))
                columns[f"{view.name}__{name}"] = array.to_pandas()
    features_frame = pd.DataFrame(columns) if columns else pd.DataFrame(index=range(rows))
    result = pd.concat([spine.reset_index(drop=True), features_frame], axis=1)
    result.index = spine.index
    return result


def _inputs(
    view: FeatureViewSpec,
    views: dict[str, FeatureViewSpec],
    joined: pd.DataFrame,
    spine: pd.DataFrame,
    timestamp_key: str,
) -> dict[str, Any]:
    """Column-wise Python values: each input view's features, the request fields, the timestamps."""
    import pyarrow as pa

    def python_columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        return {name: table.column(name).to_pylist() for name in table.column_names}

    out: dict[str, Any] = {}
    for source in view.sources:
        names = views[source].feature_names
        values = python_columns(joined[[f"{source}__{n}" for n in names]])
        out[source] = {n: values[f"{source}__{n}"] for n in names}
    out["request"] = python_columns(spine[[f.name for f in view.request_schema]].reset_index(drop=True))
    stamps = pa.array(spine[timestamp_key].reset_index(drop=True))
    if getattr(stamps.type, "tz", None):
        stamps = stamps.cast(pa.timestamp("us", "UTC")).cast(pa.timestamp("us"))
    out["timestamps"] = stamps.cast(pa.timestamp("us")).to_pylist()
    return out
