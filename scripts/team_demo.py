"""`make team-demo`: featureplane as a team shares it, on one machine.

Starts a PostgreSQL server, then `featureplane server` on it (the account: registry, users, roles, keys,
audit log) and a lookup service that reads the same PostgreSQL registry. An admin creates the live
workspace `prod` and applies the example repository through the server; a second user, `analyst`, sees
nothing of `prod` until the admin grants a role, and may then read it but not apply to it. The example
views are materialized, the lookup API answers with a consumer key created through the server, and the
audit log shows who did what. Everything lives in `.team-demo/` and a temporary PostgreSQL cluster,
made fresh on every run (``$FEATUREPLANE_TEAM_DEMO_DIR`` moves it); with a terminal, the servers stay up until Ctrl-C so the web UI can be opened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from demo import BIN, DEMO_REQUESTS, ROOT, SERVICE, WORKSPACE, console, free_port, post, show_service
from rich.panel import Panel
from rich.table import Table

from featureplane.util.local_postgres import LocalPostgres

HERE = Path(os.environ.get("FEATUREPLANE_TEAM_DEMO_DIR") or ROOT / ".team-demo").resolve()
SERVER_DIR = HERE / "server"
REPO = HERE / "repo"
ADMIN, ADMIN_PASSWORD = "admin", "admin-demo-password"
ANALYST, ANALYST_PASSWORD = "analyst", "analyst-demo-password"
BATCH_VIEWS = ("user_profile", "user_daily_spend", "user_transaction_metrics")


def stores(data: Path) -> dict:
    """The engine and stores both configurations name: whoever materializes and the server (which
    deletes a workspace's data) see the same files."""
    return {
        "project": "fraud_detection",
        "data_dir": str(data),
        "engine": {"type": "duckdb", "warehouse": str(data / "warehouse.duckdb")},
        "offline_store": {"type": "delta", "path": str(data / "offline")},
        "online_store": {"type": "sqlite", "path": str(data / "online.db")},
        "dbt": {"project_dir": str(ROOT / "dbt")},
    }


def write_configs(dsn: str, data: Path) -> None:
    """The server's featureplane.yaml (registry on PostgreSQL) and the repository's (registry: the
    server). Each person's token file is chosen by $FEATUREPLANE_TOKEN_FILE."""
    SERVER_DIR.mkdir(parents=True)
    server = {
        **stores(data),
        "registry": {"type": "postgres", "dsn": dsn},
        "serving": {"registry_refresh_seconds": 1},
    }
    (SERVER_DIR / "featureplane.yaml").write_text(yaml.safe_dump(server, sort_keys=False))
    shutil.copytree(
        ROOT / "feature_repo",
        REPO,
        ignore=shutil.ignore_patterns(".featureplane", "__pycache__", "featureplane.yaml"),
    )
    client = {
        **stores(data),
        "registry": {
            "type": "remote",
            "url": "${FEATUREPLANE_SERVER_URL}",
            "token_file": "${FEATUREPLANE_TOKEN_FILE}",
        },
    }
    (REPO / "featureplane.yaml").write_text(yaml.safe_dump(client, sort_keys=False))


class Person:
    """Someone running the CLI with their own session (token file) against the server."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.env = {
            **os.environ,
            "FEATUREPLANE_SERVER_URL": url,
            "FEATUREPLANE_TOKEN_FILE": str(HERE / f"tokens-{name}.json"),
            "FEATUREPLANE_API_KEY": "",
            "FEATUREPLANE_CONFIG": "",
            "FEATUREPLANE_WORKSPACE": "",
            "COLUMNS": "120",
        }

    def command(self, args: str) -> list[str]:
        """``featureplane <args>`` on the demo's repository (``args`` split at spaces)."""
        return [str(BIN / "featureplane"), *args.split(), "--config", str(REPO)]

    def run(self, step: str, args: str, stdin: str | None = None) -> str:
        started = time.monotonic()
        with console.status(f"{step}..."):
            result = subprocess.run(
                self.command(args), cwd=HERE, env=self.env, input=stdin, capture_output=True, text=True
            )
        if result.returncode != 0:
            console.print(f"[bold red]✗ {step} failed[/] (featureplane {args})")
            console.print(result.stdout[-6000:], result.stderr[-6000:])
            sys.exit(1)
        console.print(f"[green]✓[/] {step} [dim]({time.monotonic() - started:.1f}s)[/]")
        return result.stdout

    def refused(self, step: str, args: str) -> None:
        """A command the server must refuse: show its one-line error."""
        result = subprocess.run(self.command(args), cwd=HERE, env=self.env, capture_output=True, text=True)
        if result.returncode == 0:
            console.print(f"[bold red]✗ {step}: the server allowed it[/]\n{result.stdout}")
            sys.exit(1)
        console.print(f"[green]✓[/] {step}: refused\n  [dim]{result.stderr.strip().splitlines()[-1]}[/]")


class Processes:
    """Servers this demo starts, each stopped by its process id."""

    def __init__(self) -> None:
        self.started: list[tuple[subprocess.Popen, object]] = []

    def start(self, name: str, args: list[str], port: int) -> str:
        log = open(HERE / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(args, cwd=HERE, stdout=log, stderr=subprocess.STDOUT)
        self.started.append((process, log))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                return url
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    console.print(
                        f"[red]{name} did not start[/]; its log:\n{(HERE / f'{name}.log').read_text()[-4000:]}"
                    )
                    sys.exit(1)
                time.sleep(0.2)

    def stop(self) -> None:
        for process, log in reversed(self.started):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
            log.close()


def api(url: str, method: str, path: str, token: str, body: dict | None = None) -> object:
    request = urllib.request.Request(
        url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        console.print(f"[red]{method} {path} failed ({exc.code}): {exc.read().decode()}[/]")
        sys.exit(1)


def main() -> None:
    os.environ.setdefault("DAGSTER_HOME", str(ROOT / ".dagster"))
    console.print(
        Panel.fit(
            "featureplane team demo: PostgreSQL → featureplane server → CLI, roles, lookups", style="bold"
        )
    )
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir()
    cluster_dir = Path(tempfile.mkdtemp(prefix="featureplane-team-demo-"))
    postgres = LocalPostgres(cluster_dir)
    processes = Processes()
    try:
        with console.status("Starting PostgreSQL (initdb, pg_ctl)..."):
            postgres.start()
            dsn = postgres.database("featureplane")
        console.print(f"[green]✓[/] PostgreSQL on 127.0.0.1:{postgres.port}, database featureplane")
        write_configs(dsn, HERE / "data")
        run_demo(processes)
    finally:
        processes.stop()
        postgres.stop()
        shutil.rmtree(cluster_dir, ignore_errors=True)


def run_demo(processes: Processes) -> None:
    subprocess.run(
        [str(BIN / "featureplane"), "server", "create-admin", "--config", str(SERVER_DIR), "--user", ADMIN, "--password-stdin"],
        input=ADMIN_PASSWORD + "\n", capture_output=True, text=True, check=True, cwd=HERE,
    )  # fmt: skip
    console.print(f"[green]✓[/] Server admin {ADMIN!r} created (argon2id hash in PostgreSQL)")
    port = free_port()
    server_cmd = [str(BIN / "featureplane"), "server", "--config", str(SERVER_DIR), "--port", str(port)]
    url = processes.start("server", server_cmd, port)
    console.print(f"[green]✓[/] featureplane server listening on {url} (OpenAPI at {url}/openapi.json)")

    admin, analyst = Person(ADMIN, url), Person(ANALYST, url)
    admin.run(
        f"{ADMIN} signs in (featureplane login)",
        f"login --user {ADMIN} --password-stdin",
        stdin=ADMIN_PASSWORD,
    )
    token = post(url + "/api/v1/login", {"user": ADMIN, "password": ADMIN_PASSWORD})[1]["token"]
    api(url, "POST", "/api/v1/users", token, {"name": ANALYST, "password": ANALYST_PASSWORD})
    console.print(f"[green]✓[/] {ADMIN} creates the user {ANALYST!r} (POST /api/v1/users)")

    admin.run(
        f"Creating the live workspace {WORKSPACE} through the server", f"workspace create {WORKSPACE} --live"
    )
    admin.run("Generating 90 days of card transactions for 10,000 users", "example generate")
    plan = admin.run(
        f"Planning the example repository against {WORKSPACE} (the server plans it)", f"plan -w {WORKSPACE}"
    )
    console.print(plan.rstrip())
    admin.run(
        f"Applying it to {WORKSPACE} through the server (one new version in PostgreSQL)",
        f"apply -w {WORKSPACE} --yes",
    )

    analyst.run(f"{ANALYST} signs in", f"login --user {ANALYST} --password-stdin", stdin=ANALYST_PASSWORD)
    listing = analyst.run(f"{ANALYST} lists workspaces (no role yet)", "workspace list")
    console.print(f"  [dim]{listing.strip() or '(none)'}[/]")
    analyst.refused(f"{ANALYST} plans against {WORKSPACE} without a role", f"plan -w {WORKSPACE}")
    admin.run(
        f"{ADMIN} grants {ANALYST} the viewer role on {WORKSPACE}",
        f"access assign-role -w {WORKSPACE} --role viewer --user {ANALYST}",
    )
    listing = analyst.run(f"{ANALYST} lists workspaces again", "workspace list")
    console.print("\n".join(f"  [dim]{line}[/]" for line in listing.strip().splitlines()))
    analyst.run(f"{ANALYST} plans against {WORKSPACE} (viewers may)", f"plan -w {WORKSPACE}")
    analyst.refused(
        f"{ANALYST} creates an API key for {WORKSPACE} (only owners may)",
        f"api-key create -w {WORKSPACE} --role consumer",
    )
    analyst.refused(f"{ANALYST} deletes {WORKSPACE} (only owners may)", f"workspace delete {WORKSPACE} --yes")

    for view in BATCH_VIEWS:
        admin.run(
            f"Materializing {view} (offline Delta table and online store)",
            f"materialize {view} -w {WORKSPACE}",
        )
    key = admin.run(
        f"Creating a consumer API key for {WORKSPACE} through the server",
        f"api-key create -w {WORKSPACE} --role consumer --quiet",
    ).strip()

    lookup_port = free_port()
    lookup_cmd = [str(BIN / "featureplane"), "serve", "--config", str(SERVER_DIR), "--port", str(lookup_port)]
    lookup = processes.start("lookup", lookup_cmd, lookup_port)
    console.print(f"[green]✓[/] Lookup API on {lookup}, reading the same registry and keys from PostgreSQL")
    show_service(lookup, key, SERVICE, DEMO_REQUESTS)
    show_audit(url, token)

    console.print(
        Panel(
            f"featureplane server: [bold]{url}[/]  (API under /api/v1, OpenAPI at /openapi.json; web UI at {url}/)\n"
            f"  sign in as {ADMIN} / {ADMIN_PASSWORD}  or  {ANALYST} / {ANALYST_PASSWORD}\n"
            f"Lookup API:          [bold]{lookup}[/]  (consumer key: {key[:12]}...)\n"
            f"The CLI as {ADMIN}:   FEATUREPLANE_SERVER_URL={url} "
            f"FEATUREPLANE_TOKEN_FILE={os.path.relpath(HERE / 'tokens-admin.json')} "
            f".venv/bin/featureplane workspace list --config {os.path.relpath(REPO)}",
            title="Team demo",
        )
    )
    if sys.stdin.isatty():
        console.print("The servers stay up until Ctrl-C.")
        try:
            signal.pause()
        except KeyboardInterrupt:
            console.print("stopping...")


def show_audit(url: str, token: str) -> None:
    events = api(url, "GET", f"/api/v1/audit?workspace={WORKSPACE}&limit=20", token)
    table = Table(title=f"GET /api/v1/audit?workspace={WORKSPACE}: who did what, when, from where")
    for column in ("time", "actor", "action", "target", "from"):
        table.add_column(column)
    for event in reversed(events):
        table.add_row(
            event["at"][11:19], event["actor"], event["action"], event["target"], event["source_ip"]
        )
    console.print(table)


if __name__ == "__main__":
    main()
