"""`make demo`: the whole platform, end to end, on the embedded defaults.

Generates the example data, creates the live workspace `prod`, applies `feature_repo/`, backfills every
partition (dbt models, plain and aggregate views, and the stream view's history from its batch source)
through the real `dagster asset materialize` CLI, shows the quality checks, creates an API key, starts the
lookup API, queries it (with a realtime feature computed from the request), runs the stream processor in
the background while payments are pushed through the ingest API (the stream view's value in
fraud_detection moves within a second), and prints a point-in-time training set of fraud_detection with
the stream features. Each step's output is kept quiet unless it fails.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "feature_repo"
BIN = Path(sys.executable).parent
WORKSPACE = "prod"
SERVICE = "fraud_detection"
DBT_SERVICE = "fraud_detection_v2"  # fraud_detection plus the views built on dbt models
DBT_VIEWS = ("user_daily_activity", "user_spend_7d")
# Each demo user with the amount of the card payment being authorised (the realtime view's request input).
DEMO_REQUESTS = [("user_0", 42.0), ("user_1", 1250.0), ("user_42", 9.99)]
STREAM_VIEW = "user_transaction_counts_5m"
STREAM_SOURCE = "transactions_stream"
# The card holder whose payments are pushed, and the payments (amount, merchant), one request each.
STREAM_USER = "user_7"
STREAM_PAYMENTS = [(12.5, "merchant_3"), (80.0, "merchant_3"), (640.0, "merchant_977")]

# Piped or captured output gets a width that fits the tables, not rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


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
    """Live views with partitions, grouped by kind and partitions (one `dagster asset materialize` call per
    group): the batch views, and the offline stream views, whose partitions backfill their history."""
    from featureplane.config import load_config
    from featureplane.materialization.partitions import align_down, partition_key, utcnow, windows
    from featureplane.registry import open_registry

    state = open_registry(load_config(REPO)).load(WORKSPACE)
    groups: dict[tuple, list[str]] = defaultdict(list)
    for view in state.definitions.feature_views.values():
        if view.start is None or not (view.is_batch or (view.is_stream and view.offline)):
            continue
        parts = list(windows(view, view.start, align_down(utcnow(), view.schedule)))
        if parts:
            first, last = partition_key(view, parts[0][0]), partition_key(view, parts[-1][0])
            groups[(view.kind, first, last)].append(view.name)
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
    wide = {**os.environ, "COLUMNS": str(console.width)}
    plan = run(
        "Planning feature_repo/ against prod", featureplane("plan", "--workspace", WORKSPACE), env=wide
    ).stdout
    console.print(plan.rstrip())
    run("Applying feature_repo/ to prod", featureplane("apply", "--workspace", WORKSPACE, "--yes"))

    env = {**os.environ, "FEATUREPLANE_CONFIG": str(REPO / "featureplane.yaml")}
    # Batch views first, then the stream views' history: before their processor first runs, so the
    # hand-over from the backfilled history to the stream leaves no gap (docs/streams.md).
    for (kind, first, last), views in sorted(
        materialization_groups().items(), key=lambda g: g[0][0] == "stream"
    ):
        # "*view" selects the view and everything upstream that Dagster builds: the dbt models it reads.
        selection = ",".join(f"*{WORKSPACE}/{v}" for v in views)
        what = (
            f"the history of the stream view {', '.join(views)} from its batch source"
            if kind == "stream"
            else f"the dbt models and {', '.join(views)}"
        )
        run(
            f"Backfilling {what} for {first} .. {last} with `dagster asset materialize`",
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

    api_key = run(
        f"Creating an API key for {WORKSPACE} (role consumer)",
        featureplane("api-key", "create", "--workspace", WORKSPACE, "--role", "consumer", "--quiet"),
    ).stdout.strip()
    ingest_key = run(
        f"Creating an API key for {WORKSPACE} (role ingest) to push payments",
        featureplane("api-key", "create", "--workspace", WORKSPACE, "--role", "ingest", "--quiet"),
    ).stdout.strip()

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
        show_lookups(base, api_key)
        stream_rows = show_stream(base, api_key, ingest_key, REPO)
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
        log.close()

    show_training_set(stream_rows[-1])
    console.print(
        Panel(
            "Dagster UI:   [bold]make ui[/]  then open http://127.0.0.1:3000 (assets prod/user_daily_spend, ...; "
            "partitions, lineage, backfills; Checks and Plots tabs: data quality, freshness, profiles)\n"
            "Monitoring:   [bold].venv/bin/featureplane status --config feature_repo --profiles[/]  (docs/monitoring.md)\n"
            f"Streams:      [bold].venv/bin/featureplane stream run -w prod --view {STREAM_VIEW} --config feature_repo[/]"
            "  while payments are pushed to POST /api/v1/ingest (docs/streams.md)\n"
            "Lookup API:   [bold]make serve[/]  then, in another terminal\n"
            "  KEY=$(.venv/bin/featureplane api-key create -w prod -q -c feature_repo)\n"
            "  curl -s http://127.0.0.1:8080/api/v1/feature-service/get-features \\\n"
            '    -H "Authorization: Tecton-key $KEY" \\\n'
            '    -d \'{"params": {"workspaceName": "prod", "featureServiceName": "fraud_detection", '
            '"joinKeyMap": {"user_id": "user_0"}, "requestContextMap": {"amount": 42.0}}}\'\n'
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


def show_lookups(base: str, api_key: str) -> None:
    show_service(base, api_key, SERVICE, DEMO_REQUESTS)
    show_service(
        base,
        api_key,
        DBT_SERVICE,
        [(user, None) for user, _ in DEMO_REQUESTS],
        views=DBT_VIEWS,
        note="user_daily_activity reads the dbt model int_user_daily_activity; user_spend_7d is declared "
        "in dbt (dbt/models/features/_features.yml), with no Python",
    )


def show_service(
    base: str,
    api_key: str,
    service: str,
    requests: list[tuple[str, float | None]],
    *,
    views: tuple[str, ...] = (),
    note: str = "",
) -> None:
    """One get-features call per (user, amount); the answers side by side, features grouped by view."""
    table = Table(title=f"POST /api/v1/feature-service/get-features ({service})")
    table.add_column("feature")
    names: list[list[str]] = []
    columns: list[list[str]] = []
    timings = []
    for user, amount in requests:
        params = {
            "workspaceName": WORKSPACE,
            "featureServiceName": service,
            "joinKeyMap": {"user_id": user},
            "metadataOptions": {"includeNames": True, "includeServingStatus": True},
        }
        if amount is not None:
            params["requestContextMap"] = {"amount": amount}
        started = time.perf_counter()
        status, body = post(
            base + "/api/v1/feature-service/get-features",
            {"params": params},
            headers={"Authorization": f"Tecton-key {api_key}"},
        )
        timings.append((time.perf_counter() - started) * 1000)
        if status != 200:
            console.print(f"[red]lookup failed ({status}): {body}[/]")
            sys.exit(1)
        shown = [
            (m["name"].split(".", 1), v, m["status"])
            for v, m in zip(body["result"]["features"], body["metadata"]["features"], strict=True)
            if not views or m["name"].split(".", 1)[0] in views
        ]
        names = [name for name, _, _ in shown]
        columns.append([wire_value(v) if st == "PRESENT" else "[dim]missing[/]" for _, v, st in shown])
        table.add_column(user if amount is None else f"{user}\namount {amount:g}", justify="right")
    add_rows_by_view(table, names, columns)
    console.print(table)
    if note:
        console.print(note)
    console.print(f"[dim]round trips: {', '.join(f'{t:.1f} ms' for t in timings)}[/]")


def show_stream(base: str, api_key: str, ingest_key: str, repo: Path) -> list[dict]:
    """Start `featureplane stream run` for the stream view in the background; push a refund of one card
    holder (the view's transformation drops it: once the processor's log says so, it is running), then
    that holder's payments one request at a time, reading fraud_detection through the lookup API after
    each until it counts the payment; stop the processor by its pid. Returns one row per payment, with
    the event time it was pushed with (``ts``)."""
    log_path = repo / ".featureplane" / "demo-stream.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    args = ["stream", "run", "-w", WORKSPACE, "--view", STREAM_VIEW, "--config", str(repo)]
    processor = subprocess.Popen(
        [str(BIN / "featureplane"), *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    rows: list[dict] = []

    def push(amount: float, merchant: str) -> tuple[float, datetime]:
        ts = datetime.now(UTC)
        record = {
            "transaction_id": f"demo_{time.time_ns()}",
            "user_id": STREAM_USER,
            "merchant_id": merchant,
            "amount": amount,
            "ts": ts.isoformat().replace("+00:00", "Z"),
        }
        status, body = post(
            base + "/api/v1/ingest",
            {"workspaceName": WORKSPACE, "records": {STREAM_SOURCE: [{"record": record}]}},
            headers={"Authorization": f"Tecton-key {ingest_key}"},
        )
        if status != 200:
            console.print(f"[red]ingest failed ({status}): {body}[/]")
            sys.exit(1)
        return time.perf_counter(), ts.replace(tzinfo=None)

    def wait(done, what: str, seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        while not done():
            if time.perf_counter() > deadline or processor.poll() is not None:
                console.print(f"[red]{what}: see {log_path}[/]")
                sys.exit(1)
            time.sleep(0.01)

    try:
        before = stream_values(base, api_key)
        with console.status(f"Starting `featureplane stream run --view {STREAM_VIEW}` in the background..."):
            push(-12.5, "merchant_3")
            wait(
                lambda: "1 dropped by the transformation" in log_path.read_text(),
                "the processor did not start",
                120,
            )
        console.print(
            f"[green]✓[/] Stream processor for {STREAM_VIEW} running in the background (pid {processor.pid}); "
            f"it dropped a refund of {STREAM_USER} (the view's transformation counts payments only)"
        )
        for number, (amount, merchant) in enumerate(STREAM_PAYMENTS, start=1):
            acknowledged, ts = push(amount, merchant)
            values: dict = {}

            def counted(number: int = number, values: dict = values) -> bool:
                values.update(stream_values(base, api_key))
                return int(values["amount_count_5m"]) >= int(before["amount_count_5m"]) + number

            wait(counted, f"the stream view did not count payment {number}", 10)
            rows.append(
                {
                    "amount": amount,
                    "merchant": merchant,
                    **values,
                    "ms": (time.perf_counter() - acknowledged) * 1000,
                    "ts": ts,
                }
            )
    finally:
        os.kill(processor.pid, signal.SIGTERM)
        processor.wait(timeout=30)
        log.close()
    columns = ("amount_count_5m", "amount_sum_5m", "merchant_id_count_distinct_5m")
    table = Table(title=f"{STREAM_VIEW} for {STREAM_USER}: payments pushed through POST /api/v1/ingest")
    for column in ("payment", *columns, "visible after"):
        table.add_column(column, justify="right")
    table.add_row("before", *(wire_value(before[c]) for c in columns), "")
    for row in rows:
        table.add_row(
            f"{row['amount']:g} at {row['merchant']}",
            *(wire_value(row[c]) for c in columns),
            f"{row['ms']:.0f} ms",
        )
    console.print(table)
    slowest = max(row["ms"] for row in rows)
    verdict = "[green]within a second[/]" if slowest < 1000 else "[yellow]over a second on this machine[/]"
    console.print(
        f"[bold]{SERVICE} {STREAM_VIEW}.amount_count_5m for {STREAM_USER}: "
        f"{wire_value(before['amount_count_5m'])} before → {wire_value(rows[-1]['amount_count_5m'])} after "
        f"{len(rows)} payments pushed[/]"
    )
    console.print(
        f"Each payment counted {verdict} of its ingest acknowledgement (slowest {slowest:.0f} ms), by "
        f"`featureplane stream run` (stopped, pid {processor.pid}); {SERVICE} serves it beside its batch "
        "and realtime features"
    )
    return rows


def stream_values(base: str, api_key: str) -> dict:
    """The stream view's features for STREAM_USER, by name, from fraud_detection through the lookup API."""
    status, body = post(
        base + "/api/v1/feature-service/get-features",
        {
            "params": {
                "workspaceName": WORKSPACE,
                "featureServiceName": SERVICE,
                "joinKeyMap": {"user_id": STREAM_USER},
                "requestContextMap": {"amount": 1.0},
                "metadataOptions": {"includeNames": True},
            }
        },
        headers={"Authorization": f"Tecton-key {api_key}"},
    )
    if status != 200:
        console.print(f"[red]lookup failed ({status}): {body}[/]")
        sys.exit(1)
    names = [m["name"] for m in body["metadata"]["features"]]
    return {
        name.split(".", 1)[1]: value
        for name, value in zip(names, body["result"]["features"], strict=True)
        if name.startswith(STREAM_VIEW + ".")
    }


def wire_value(value: object) -> str:
    """A value as the API sent it (int64 as a JSON string), floats shortened for the table."""
    return f"{value:,.2f}" if isinstance(value, float) else json.dumps(value)


def add_rows_by_view(table: Table, names: list[list[str]], columns: list[list[str]]) -> None:
    """One row per feature, under a heading row per feature view."""
    view = None
    for i, name in enumerate(names):
        if len(name) == 2 and name[0] != view:
            view = name[0]
            table.add_row(f"[bold]{view}[/]", *([""] * len(columns)), end_section=False)
        table.add_row(f"  {name[-1]}" if len(name) == 2 else name[0], *(c[i] for c in columns))


def busiest_payment(repo: Path) -> tuple[str, datetime, float, int]:
    """The card payment in raw.transactions with the most payments of its holder in the five minutes up
    to it (the latest such): a spine row at which the stream view's backfilled history counts."""
    from featureplane.compute.duckdb import connect_warehouse
    from featureplane.config import load_config

    con = connect_warehouse(load_config(repo).warehouse_path)
    try:
        return con.execute(
            """
            SELECT user_id, ts, amount, is_fraud::INT FROM (
                SELECT *, COUNT(*) OVER (
                    PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL 4 MINUTE PRECEDING AND CURRENT ROW
                ) AS recent
                FROM raw.transactions WHERE amount > 0
            )
            ORDER BY recent DESC, ts DESC LIMIT 1
            """
        ).fetchone()
    finally:
        con.close()


def show_training_set(pushed: dict, repo: Path = REPO) -> pd.DataFrame:
    """A point-in-time training set of fraud_detection: a few users at past times, the busiest payment of
    the backfilled history, and STREAM_USER at the event time of the last payment pushed (``pushed``, a
    row of show_stream), where the stream view's training value is the one the lookup API served."""
    import pandas as pd

    import featureplane
    from featureplane.materialization.partitions import utcnow

    now = pd.Timestamp(utcnow()).floor("D")
    busy_user, busy_ts, busy_amount, busy_label = busiest_payment(repo)
    spine = pd.DataFrame(
        {
            "user_id": ["user_0", "user_0", "user_1", "user_42", busy_user, STREAM_USER],
            "ts": [
                now - pd.Timedelta(days=30, hours=12),
                now - pd.Timedelta(hours=12),
                now - pd.Timedelta(days=3, hours=2),
                now - pd.Timedelta(hours=1),
                pd.Timestamp(busy_ts),
                pd.Timestamp(pushed["ts"]),
            ],
            "amount": [25.0, 1250.0, 8.5, 60.0, busy_amount, pushed["amount"]],
            "label": [0, 1, 0, 0, busy_label, 0],
        }
    )
    with console.status("Building a point-in-time training set..."):
        service = featureplane.get_workspace(WORKSPACE, config=repo).get_feature_service(SERVICE)
        training = service.get_historical_features(spine, timestamp_key="ts")
    table = Table(title=f"get_historical_features(spine) of {SERVICE}: point-in-time correct training rows")
    table.add_column("column", no_wrap=True)
    for i in range(len(training)):
        table.add_column(f"row {i}", justify="right", overflow="fold")
    columns: list[list[str]] = [[] for _ in range(len(training))]
    for column in training.columns:
        for i, value in enumerate(training[column]):
            if pd.isna(value):
                columns[i].append("[dim]null[/]")
            elif isinstance(value, float):
                columns[i].append(f"{value:.2f}")
            elif isinstance(value, pd.Timestamp):
                columns[i].append(value.strftime("%m-%d %H:%M"))
            else:
                columns[i].append(str(value))
    add_rows_by_view(table, [column.split("__", 1) for column in training.columns], columns)
    console.print(table)
    count = f"{STREAM_VIEW}__amount_count_5m"
    console.print(
        f"{count}: row {len(training) - 2} ({busy_user}'s busiest five minutes in raw.transactions) counts "
        f"{training[count].iloc[-2]} payment(s) from the backfilled history;\n"
        f"row {len(training) - 1} ({STREAM_USER} at the last payment pushed) counts {training[count].iloc[-1]} "
        f"from the stream's event log, as the lookup API served ({wire_value(pushed['amount_count_5m'])})"
    )
    return training


if __name__ == "__main__":
    main()
