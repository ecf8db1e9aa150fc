"""`make demo`: the whole platform, end to end, on the embedded defaults.

Generates the example data, creates the live workspace `prod`, applies `feature_repo/`, backfills every
partition through the real `dagster asset materialize` CLI, starts the lookup API, queries it, and prints
a point-in-time training set. Each step's output is kept quiet unless it fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "feature_repo"
BIN = Path(sys.executable).parent
WORKSPACE = "prod"
SERVICE = "fraud_detection"
DEMO_USERS = ["user_0", "user_1", "user_42"]

console = Console(highlight=False)


def run(step: str, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    started = time.monotonic()
    with console.status(f"{step}..."):
        result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        console.print(f"[bold red]✗ {step} failed[/] ({' '.join(args)})")
        console.print(result.stdout[-6000:])
        console.print(result.stderr[-12000:])
        sys.exit(1)
    console.print(f"[green]✓[/] {step} [dim]({time.monotonic() - started:.1f}s)[/]")
    return result


def featureplane(*args: str) -> list[str]:
    return [str(BIN / "featureplane"), *args, "--config", str(REPO)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, payload: dict, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def materialization_groups() -> dict[tuple, list[str]]:
    """Live batch views grouped by partitions (one `dagster asset materialize` call per group)."""
    from featureplane.config import load_config
    from featureplane.partitions import align_down, partition_key, utcnow, windows
    from featureplane.registry import open_registry

    state = open_registry(load_config(REPO)).load(WORKSPACE)
    groups: dict[tuple, list[str]] = defaultdict(list)
    for view in state.definitions.feature_views.values():
        if not view.is_batch or view.start is None:
            continue
        parts = list(windows(view, view.start, align_down(utcnow(), view.schedule)))
        if parts:
            groups[(partition_key(view, parts[0][0]), partition_key(view, parts[-1][0]))].append(view.name)
    return groups


def main() -> None:
    os.environ.setdefault("DAGSTER_HOME", str(ROOT / ".dagster"))
    console.print(
        Panel.fit(
            "featureplane demo: definitions → plan/apply → Dagster → lookup API → training set", style="bold"
        )
    )

    run("Generating 90 days of card transactions for 10,000 users", featureplane("example", "generate"))
    listing = subprocess.run(
        featureplane("workspace", "list"), cwd=ROOT, capture_output=True, text=True
    ).stdout
    if f" {WORKSPACE} " not in listing:
        run(
            f"Creating the live workspace {WORKSPACE}",
            featureplane("workspace", "create", WORKSPACE, "--live"),
        )
    plan = run("Planning feature_repo/ against prod", featureplane("plan", "--workspace", WORKSPACE)).stdout
    console.print(plan.rstrip())
    run("Applying feature_repo/ to prod", featureplane("apply", "--workspace", WORKSPACE, "--yes"))

    env = {**os.environ, "FEATUREPLANE_CONFIG": str(REPO / "featureplane.yaml")}
    for (first, last), views in materialization_groups().items():
        # "*view" selects the view and everything upstream that Dagster builds: the dbt models it reads.
        selection = ",".join(f"*{WORKSPACE}/{v}" for v in views)
        run(
            f"Backfilling the dbt models and {', '.join(views)} for {first} .. {last} with `dagster asset materialize`",
            [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "dagster_project",
                "--select",
                selection,
                "--partition-range",
                f"{first}...{last}",
            ],
            env=env,
        )

    show_monitoring(env)

    port = free_port()
    log = open(ROOT / ".dagster" / "demo-serve.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        featureplane("serve", "--host", "127.0.0.1", "--port", str(port)),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    console.print("[red]the lookup server did not start[/]")
                    sys.exit(1)
                time.sleep(0.2)
        console.print(f"[green]✓[/] Lookup API listening on {base}")
        show_lookups(base)
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
        log.close()

    show_training_set()
    console.print(
        Panel(
            "Dagster UI:   [bold]make ui[/]  then open http://127.0.0.1:3000 (assets prod/user_daily_spend, ...; "
            "partitions, lineage, backfills; Checks and Plots tabs: data quality, freshness, profiles)\n"
            "Monitoring:   [bold].venv/bin/featureplane status --config feature_repo --profiles[/]  (docs/monitoring.md)\n"
            "Lookup API:   [bold]make serve[/]  then\n"
            "  curl -s -X POST http://127.0.0.1:8080/api/v1/feature-service/get-features \\\n"
            '    -d \'{"params": {"workspaceName": "prod", "featureServiceName": "fraud_detection", '
            '"joinKeyMap": {"user_id": "user_0"}}}\'\n'
            'Notebook:     featureplane.get_workspace("prod", config="feature_repo")'
            '.get_feature_service("fraud_detection").get_historical_features(spine)',
            title="Next",
        )
    )


def show_monitoring(env: dict) -> None:
    """The backfill's quality checks and profiles, and the views' freshness, as Dagster recorded them."""
    run(
        "Evaluating freshness checks with `dagster job execute`",
        [
            str(BIN / "dagster"),
            "job",
            "execute",
            "-m",
            "dagster_project",
            "-j",
            f"{WORKSPACE}__freshness_checks",
        ],
        env=env,
    )
    status = run(
        "Reading checks and profiles from Dagster (`featureplane status --profiles`)",
        featureplane("status", "--workspace", WORKSPACE, "--profiles"),
        env={**env, "COLUMNS": str(console.width)},
    )
    console.print(status.stdout.rstrip())


def show_lookups(base: str) -> None:
    table = Table(title=f"POST /api/v1/feature-service/get-features ({SERVICE})", show_lines=False)
    table.add_column("feature")
    names: list[str] = []
    columns: list[list[str]] = []
    timings = []
    for user in DEMO_USERS:
        started = time.perf_counter()
        status, body = post(
            base + "/api/v1/feature-service/get-features",
            {
                "params": {
                    "workspaceName": WORKSPACE,
                    "featureServiceName": SERVICE,
                    "joinKeyMap": {"user_id": user},
                    "metadataOptions": {"includeNames": True, "includeServingStatus": True},
                }
            },
        )
        timings.append((time.perf_counter() - started) * 1000)
        if status != 200:
            console.print(f"[red]lookup failed ({status}): {body}[/]")
            sys.exit(1)
        meta = body["metadata"]["features"]
        names = [m["name"] for m in meta]
        columns.append(
            [
                json.dumps(v) if m["status"] == "PRESENT" else "[dim]missing[/]"
                for v, m in zip(body["result"]["features"], meta, strict=True)
            ]
        )
        table.add_column(user, justify="right")
    for i, name in enumerate(names):
        table.add_row(name, *(c[i] for c in columns))
    console.print(table)
    console.print(f"[dim]round trips: {', '.join(f'{t:.1f} ms' for t in timings)}[/]")


def show_training_set() -> None:
    import pandas as pd

    import featureplane
    from featureplane.partitions import utcnow

    now = pd.Timestamp(utcnow()).floor("D")
    spine = pd.DataFrame(
        {
            "user_id": ["user_0", "user_0", "user_1", "user_42"],
            "ts": [
                now - pd.Timedelta(days=30, hours=12),
                now - pd.Timedelta(hours=12),
                now - pd.Timedelta(days=3, hours=2),
                now - pd.Timedelta(hours=1),
            ],
            "label": [0, 1, 0, 0],
        }
    )
    with console.status("Building a point-in-time training set..."):
        service = featureplane.get_workspace(WORKSPACE, config=REPO).get_feature_service(SERVICE)
        training = service.get_historical_features(spine, timestamp_key="ts")
    table = Table(title="get_historical_features(spine): point-in-time correct training rows")
    table.add_column("column", no_wrap=True)
    for i in range(len(training)):
        table.add_column(f"row {i}", justify="right", overflow="fold")
    for column in training.columns:
        cells = []
        for value in training[column]:
            if pd.isna(value):
                cells.append("[dim]null[/]")
            elif isinstance(value, float):
                cells.append(f"{value:.2f}")
            elif isinstance(value, pd.Timestamp):
                cells.append(value.strftime("%m-%d %H:%M"))
            else:
                cells.append(str(value))
        table.add_row(column, *cells)
    console.print(table)


if __name__ == "__main__":
    main()
