"""Training/serving drift: served feature values against the offline values of the same period.

For a feature service and a window (a day), the served sample (what the lookup service logged) is
compared with the offline rows of each of its views that were valid during the window
(``features_in_range``: the values a lookup in that window should have returned). Each feature gets a
population stability index (PSI) over bins cut at the offline values' quantiles (numbers) or over its
most common values (strings, booleans); a PSI above the threshold (0.2 by default: a significant shift)
fails the drift check. Missing values are not binned: the served share of missing values is reported
on its own (requests for unknown entities are not drift).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from featureplane.config import MonitoringSettings
from featureplane.definitions.specs import FeatureViewSpec, format_time

if TYPE_CHECKING:
    from featureplane.registry.base import WorkspaceState
    from featureplane.runtime import Runtime

EPSILON = 1e-4
TOP_CATEGORIES = 20
NUMERIC = ("int64", "float64")
CATEGORICAL = ("string", "bool")


def population_stability_index(expected: list[float], actual: list[float]) -> float:
    """PSI of two distributions over the same bins (shares, each summing to 1)."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, EPSILON), max(a, EPSILON)
        total += (a - e) * math.log(a / e)
    return float(total)


def _shares(counts: list[int]) -> list[float]:
    n = sum(counts)
    return [c / n for c in counts] if n else [0.0] * len(counts)


def numeric_psi(offline: Any, served: Any, bins: int) -> tuple[float, int]:
    """PSI over quantile bins of the offline values; returns (psi, number of bins)."""
    import numpy as np

    offline = np.asarray(offline, dtype=float)
    served = np.asarray(served, dtype=float)
    cuts = np.unique(np.quantile(offline, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(cuts, offline, side="right"), minlength=len(cuts) + 1)
    actual = np.bincount(np.searchsorted(cuts, served, side="right"), minlength=len(cuts) + 1)
    shares = _shares([int(c) for c in expected]), _shares([int(c) for c in actual])
    return population_stability_index(*shares), len(cuts) + 1


def categorical_psi(offline: list[Any], served: list[Any]) -> tuple[float, int]:
    """PSI over the offline values' most common categories plus one bin for all others."""
    from collections import Counter

    common = [value for value, _ in Counter(offline).most_common(TOP_CATEGORIES)]
    index = {value: i for i, value in enumerate(common)}
    expected = [0] * (len(common) + 1)
    actual = [0] * (len(common) + 1)
    for value in offline:
        expected[index.get(value, len(common))] += 1
    for value in served:
        actual[index.get(value, len(common))] += 1
    return population_stability_index(_shares(expected), _shares(actual)), len(expected)


@dataclass
class FeatureDrift:
    feature: str
    dtype: str
    served: int
    offline: int
    served_missing: float
    psi: float | None = None
    bins: int = 0
    passed: bool = True
    note: str = ""


@dataclass
class DriftReport:
    workspace: str
    service: str
    start: datetime
    end: datetime
    threshold: float
    served_vectors: int
    features: list[FeatureDrift] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.features)

    @property
    def compared(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.psi is not None]

    @property
    def max_psi(self) -> float | None:
        return max((f.psi for f in self.compared), default=None)  # type: ignore[type-var]

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if not f.passed]

    def summary(self) -> str:
        if not self.served_vectors:
            return f"no served feature vectors were logged for {self.service} in [{self.start}, {self.end})"
        if not self.compared:
            return f"{self.served_vectors} served vector(s): too few values to compare any feature"
        if self.drifted:
            worst = ", ".join(f"{f.feature} (PSI {f.psi:.3f})" for f in self.drifted)
            return f"training/serving drift above PSI {self.threshold}: {worst}"
        return f"no drift: every compared feature has PSI <= {self.threshold} (max {self.max_psi:.3f})"

    def markdown(self) -> str:
        lines = [
            "| feature | type | served | offline | served missing | PSI | status |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for f in self.features:
            psi = f"{f.psi:.4f}" if f.psi is not None else "-"
            status = ("ok" if f.passed else "**drift**") if f.psi is not None else (f.note or "-")
            lines.append(
                f"| {f.feature} | {f.dtype} | {f.served} | {f.offline} | {f.served_missing:.1%} | {psi} | {status} |"
            )
        return "\n".join(lines)

    def metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "featureplane/kind": "drift",
            "window": f"[{format_time(self.start)}, {format_time(self.end)})",
            "served_vectors": self.served_vectors,
            "psi_threshold": self.threshold,
            "drifted_features": ", ".join(f.feature for f in self.drifted) or "none",
        }
        if self.max_psi is not None:
            data["max_psi"] = round(self.max_psi, 6)
        for f in self.compared:
            data[f"psi/{f.feature}"] = round(f.psi, 6)  # type: ignore[arg-type]
        return data


def read_served(
    settings: MonitoringSettings, workspace: str, service: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Served vectors logged in ``[start, end)``: from the sink's ``read`` when it has one (a production
    sink that can also read its data back), else from the JSON-lines files."""
    if settings.serving_log_sink:
        from featureplane.serving.monitor import load_sink

        sink = load_sink(settings)
        if hasattr(sink, "read"):
            return list(sink.read(workspace, service, start, end))  # type: ignore[union-attr]
    lo, hi = format_time(start), format_time(end)
    records = []
    day = datetime(start.year, start.month, start.day)
    while day < end:
        path = Path(settings.serving_log_path) / workspace / service / f"{day:%Y-%m-%d}.jsonl"
        if path.exists():
            with open(path, "rb") as lines:
                for line in lines:
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # a line cut short by a crash
                    if lo <= record.get("served_at", "").rstrip("Z") < hi:
                        records.append(record)
        day += timedelta(days=1)
    return records


def compute_drift(
    runtime: Runtime,
    state: WorkspaceState,
    service_name: str,
    start: datetime,
    end: datetime,
    settings: MonitoringSettings | None = None,
) -> DriftReport:
    """Compare the service's served sample in ``[start, end)`` with the offline values of that window."""
    import pandas as pd

    settings = settings or MonitoringSettings.from_config(runtime.config)
    service = state.feature_service(service_name)
    served = read_served(settings, state.name, service_name, start, end)
    report = DriftReport(
        workspace=state.name,
        service=service_name,
        start=start,
        end=end,
        threshold=settings.psi_threshold,
        served_vectors=len(served),
    )
    for part in service.features:
        view = state.feature_view(part.view)
        unstored = _not_stored(view)
        offline = (
            None
            if unstored
            else runtime.offline_store.features_in_range(state.table_id(view.name), view, start, end)
        )
        for feature in part.features:
            name = f"{view.name}.{feature}"
            dtype = view.feature(feature).type
            values = [r.get("features", {}).get(name) for r in served]
            present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
            reference = (
                []
                if offline is None
                else [v for v in offline[feature].tolist() if v is not None and not pd.isna(v)]
            )
            drift = FeatureDrift(
                feature=name,
                dtype=str(dtype),
                served=len(present),
                offline=len(reference),
                served_missing=(1 - len(present) / len(values)) if values else 0.0,
            )
            report.features.append(drift)
            if unstored:
                drift.note = unstored
                continue
            if dtype.name not in NUMERIC + CATEGORICAL:
                drift.note = f"{dtype} not compared"
                continue
            if len(present) < settings.drift_min_samples or len(reference) < settings.drift_min_samples:
                drift.note = f"fewer than {settings.drift_min_samples} values"
                continue
            if dtype.name in NUMERIC:
                drift.psi, drift.bins = numeric_psi(reference, present, settings.drift_bins)
            else:
                drift.psi, drift.bins = categorical_psi(reference, present)
            drift.passed = drift.psi <= settings.psi_threshold
    return report


def _not_stored(view: FeatureViewSpec) -> str | None:
    """Why a view has no stored offline feature values to compare with (None when it has)."""
    if view.is_realtime:
        return "computed at request time: no stored offline values"
    if view.is_stream and not view.offline:
        return "stream view with offline=False: no event log to compare with"
    return None
