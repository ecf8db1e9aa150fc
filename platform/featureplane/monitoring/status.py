"""``featureplane status``: per feature view, the last materialized partition, freshness, the latest
check results and failed runs; per stream feature view, its lag (measured now); per feature service,
serving health and drift.

What ran lives in the Dagster instance, and only the Dagster code location imports Dagster. It registers
a *status provider* (the entry point group ``featureplane.status``, see pyproject.toml) that fills these
plain records; this module finds it by that group, never by importing the code location, and renders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from featureplane.monitoring.freshness import FreshnessResult, format_age
from featureplane.monitoring.stream_lag import StreamLag, format_lag

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class CheckStatus:
    name: str
    passed: bool | None  # None: planned or did not run
    severity: str
    at: str
    description: str = ""


@dataclass
class ViewStatus:
    workspace: str
    view: str
    last_partition: str | None
    materialized_partitions: int
    freshness: FreshnessResult | None
    checks: list[CheckStatus] = field(default_factory=list)
    failed_runs: int = 0
    last_failed_run: str | None = None
    last_failure_at: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)  # of the last materialized partition

    @property
    def failed_checks(self) -> list[CheckStatus]:
        return [c for c in self.checks if c.passed is False]


@dataclass
class ServiceStatus:
    workspace: str
    service: str
    health: dict[str, Any] = field(default_factory=dict)
    health_at: str | None = None
    drift: CheckStatus | None = None


@dataclass
class StreamStatus:
    """A stream view's lag as measured for the report, its latest ``stream_lag`` check, and when the
    stream lag sensor last saw its processor commit (None: never observed; ``unknown``: not seen
    changing since the sensor started)."""

    lag: StreamLag
    check: CheckStatus | None = None
    progress_seen_at: str | None = None  # when the stream lag sensor last saw the processor commit

    def to_json(self) -> dict[str, Any]:
        return {
            **self.lag.to_json(),
            "progress_seen_at": self.progress_seen_at,
            "check": asdict(self.check) if self.check else None,
        }


@dataclass
class StatusReport:
    views: list[ViewStatus] = field(default_factory=list)
    services: list[ServiceStatus] = field(default_factory=list)
    streams: list[StreamStatus] = field(default_factory=list)
    failed_runs_window_days: int = 7
    problems: list[str] = field(default_factory=list)  # of the configuration against the registry

    def to_json(self) -> dict[str, Any]:
        def view(v: ViewStatus) -> dict[str, Any]:
            data = asdict(v)
            data["freshness"] = (
                {"passed": v.freshness.passed, "message": v.freshness.message, **v.freshness.metadata()}
                if v.freshness
                else None
            )
            return data

        return {
            "views": [view(v) for v in self.views],
            "streams": [s.to_json() for s in self.streams],
            "services": [asdict(s) for s in self.services],
            "problems": self.problems,
        }


def render_profiles(console: Console, report: StatusReport) -> None:
    """Each view's profile of its last materialized partition: one row per feature."""
    from rich.table import Table

    stats = ("null_fraction", "min", "max", "mean", "distinct_count")
    for v in report.views:
        if not v.profile:
            continue
        rows = v.profile.get("dagster/row_count", 0)
        table = Table(
            title=f"Profile of {v.workspace}/{v.view}, partition {v.last_partition}: {rows:,} rows",
            box=None,
            pad_edge=False,
            title_justify="left",
            title_style="bold",
        )
        table.add_column("feature", no_wrap=True)
        for stat in stats:
            table.add_column(stat.replace("_", " "), justify="right")
        for feature in dict.fromkeys(k.split(".", 1)[0] for k in v.profile if "." in k):
            cells = []
            for stat in stats:
                value = v.profile.get(f"{feature}.{stat}")
                if value is None:
                    cells.append("-")
                elif stat == "null_fraction":
                    cells.append(f"{value:.1%}")
                else:
                    cells.append(f"{value:,.2f}" if isinstance(value, float) else f"{value:,}")
            table.add_row(feature, *cells)
        console.print(table)


def render_status(console: Console, report: StatusReport) -> None:
    from rich.table import Table
    from rich.text import Text

    for problem in report.problems:
        console.print(Text(f"warning: {problem}", style="yellow"))
    if not report.views and not report.services and not report.streams:
        console.print("No live feature views to report on.")
        return
    table = Table(title="Feature views", box=None, pad_edge=False, title_justify="left", title_style="bold")
    table.add_column("view", no_wrap=True)
    for column in ("last partition", "freshness", "checks"):
        table.add_column(column, no_wrap=True)
    table.add_column(f"failed runs ({report.failed_runs_window_days}d)", overflow="fold")
    for v in report.views:
        if v.freshness is None:
            fresh = Text("not monitored", style="dim")
        else:
            label = "fresh" if v.freshness.passed else "STALE"
            detail = f" ({format_age(v.freshness.lag)} old)" if v.freshness.lag is not None else ""
            fresh = Text(label + detail, style="green" if v.freshness.passed else "bold red")
        checks = Text()
        passed = sum(1 for c in v.checks if c.passed)
        if v.checks:
            checks.append(f"{passed}/{len(v.checks)} passed", style="green" if not v.failed_checks else "")
        else:
            checks.append("none recorded", style="dim")
        for c in v.failed_checks:
            style = "bold red" if c.severity == "ERROR" else "yellow"
            checks.append(f"\n✗ {c.name} ({c.severity.lower()})", style=style)
        runs = Text(str(v.failed_runs), style="red" if v.failed_runs else "dim")
        if v.last_failed_run:
            runs.append(f"\nlast {v.last_failed_run[:8]} {v.last_failure_at or ''}", style="dim")
        table.add_row(f"{v.workspace}/{v.view}", v.last_partition or "never", fresh, checks, runs)
    if report.views:
        console.print(table)
    if report.streams:
        render_streams(console, report.streams)
    if report.services:
        services = Table(
            title="Feature services", box=None, pad_edge=False, title_justify="left", title_style="bold"
        )
        for column in ("service", "requests/s", "error rate", "p50 / p99 ms", "drift"):
            services.add_column(column)
        for s in report.services:
            h = s.health
            drift = Text("not evaluated", style="dim")
            if s.drift is not None and s.drift.passed is not None:
                drift = Text(
                    "ok" if s.drift.passed else "DRIFT", style="green" if s.drift.passed else "bold yellow"
                )
            services.add_row(
                f"{s.workspace}/{s.service}",
                f"{h['requests_per_second']:.2f}" if "requests_per_second" in h else "-",
                f"{h['error_rate']:.2%}" if "error_rate" in h else "-",
                f"{h.get('latency_p50_ms', 0):.2f} / {h.get('latency_p99_ms', 0):.2f}"
                if "latency_p50_ms" in h
                else "-",
                drift,
            )
        console.print(services)


def render_streams(console: Console, streams: list[StreamStatus]) -> None:
    """One line per stream feature view: shards, events behind, the oldest unprocessed event's age,
    late and invalid counts, and OK / LAGGING against its bound."""
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title="Stream feature views", box=None, pad_edge=False, title_justify="left", title_style="bold"
    )
    table.add_column("view", no_wrap=True)
    columns = ("shards", "events behind", "oldest unprocessed", "late / invalid", "last progress", "lag")
    for column in columns:
        table.add_column(column, no_wrap=column != "lag", overflow="fold")
    for s in streams:
        lag = s.lag
        style = {"OK": "green", "LAGGING": "bold red", "ERROR": "bold red"}[lag.verdict]
        verdict = Text(lag.verdict, style=style)
        verdict.append(f" (bound {format_lag(lag.bound)})", style="dim")
        if lag.error:
            verdict.append(f"\n{lag.error}", style="red")
        oldest = f"{format_lag(lag.age)} ago" if lag.oldest_unprocessed else "-"
        table.add_row(
            f"{lag.workspace}/{lag.view}",
            str(len(lag.shards)),
            lag.behind_text(),
            oldest,
            f"{lag.late:,} / {lag.invalid:,}",
            (s.progress_seen_at or "-").replace("T", " ")[:16],
            verdict,
        )
    console.print(table)


class StatusError(RuntimeError):
    pass


# The entry point group of status providers: ``name = "module:function(config, workspace)"``.
STATUS_PROVIDERS = "featureplane.status"


def collect(config: Any, workspace: str | None, dagster_home: str | None = None) -> StatusReport:
    """Ask the Dagster code location for the status (it imports Dagster; this package never does)."""
    import os
    import warnings
    from importlib.metadata import entry_points
    from pathlib import Path

    from featureplane.config import ENV_CONFIG
    from featureplane.registry import open_registry
    from featureplane.registry.base import WorkspaceNotFound

    home = dagster_home or os.environ.get("DAGSTER_HOME")
    if not home:
        raise StatusError(
            "featureplane status reads the Dagster instance: set DAGSTER_HOME (make sets it to .dagster) "
            "or pass --dagster-home"
        )
    if not Path(home).is_dir():
        raise StatusError(f"the Dagster home {home} does not exist")
    if workspace is not None:
        try:
            info = open_registry(config).get_workspace(workspace)
        except WorkspaceNotFound as exc:
            raise StatusError(str(exc)) from None
        if not info.live:
            raise StatusError(f"workspace {workspace!r} is a development workspace: it is never materialized")
    os.environ["DAGSTER_HOME"] = str(Path(home).resolve())
    os.environ[ENV_CONFIG] = str(config.path)  # the code location loads this repository's config
    providers = {p.name: p for p in entry_points(group=STATUS_PROVIDERS)}
    if not providers:
        raise StatusError(
            f"no status provider is installed (entry point group {STATUS_PROVIDERS!r}): install featureplane "
            "with its Dagster code location (pip install -e .)"
        )
    provider = providers.get("dagster") or next(iter(providers.values()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dagster's beta and preview notices
        collect_status = provider.load()
        return collect_status(config, workspace)
