"""The production Dagster stack as real processes, started with the commands of deploy/docker-compose.yml:
PostgreSQL (registry and Dagster's storage), `dagster code-server start`, `dagster-webserver` and
`dagster-daemon` over deploy/dagster/workspace.yaml, and the featureplane server and lookup service.

Backfills are launched through the webserver's GraphQL API as the UI launches them and carried out by
the daemon: per-partition status and checks appear; a failed backfill raises the alert sensor's alert
and its failed partitions are rerun; a run cancelled mid-way leaves no offline commit; the freshness
schedule ticks on the daemon; an apply reaches the asset graph by reloading the code location."""

from __future__ import annotations

import fcntl
import itertools
import os
import shlex
import subprocess
import time

import duckdb
import pytest
import yaml
from conftest import BIN, ROOT, Server, copy_example_repo, free_port, generate_small_data
from dagster_graphql import FINISHED, LAUNCH, STATUS, graphql

from featureplane.materialization.materialize import view_lock
from featureplane.util.local_postgres import server_binaries

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(server_binaries() is None, reason="PostgreSQL's server is not installed"),
]

DEPLOY = ROOT / "deploy"
VIEW = ["prod", "user_daily_spend"]

RERUN = """
mutation Rerun($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
ASSET = """
query Asset($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      partitionStats { numMaterialized numFailed numPartitions }
      assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { status } } } }
    }
  }
}"""
TERMINATE = """
mutation Terminate($id: String!) {
  terminateRun(runId: $id) { __typename ... on PythonError { message } }
}"""
RUN = """
query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"""
RELOAD = """
mutation Reload($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry { locationOrLoadError { __typename } }
  }
}"""
ASSET_KEYS = "query { assetNodes { assetKey { path } } }"
SCHEDULE = """
query Ticks($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule { scheduleState { ticks(limit: 10) { status runIds } } }
  }
}"""


def compose_commands() -> dict[str, list[str]]:
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    return {name: service["command"] for name, service in services.items() if "command" in service}


def local(command: list[str], ports: dict[str, int], workspace_yaml: str) -> list[str]:
    """A compose command as a local process: 127.0.0.1, free ports, the test's workspace.yaml, the
    virtualenv's executables."""
    replaced = [
        "127.0.0.1" if part == "0.0.0.0" else str(ports.get(part, part)) if part in ports else part
        for part in command
    ]
    replaced = [workspace_yaml if part == "/opt/dagster/workspace.yaml" else part for part in replaced]
    return [str(BIN / replaced[0]), *replaced[1:]]


def wait_for(what: str, probe, timeout: float, logs=()) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
            raise AssertionError(f"{what}: not within {timeout:.0f}s\n{tails}")
        time.sleep(1)


class Stack:
    def __init__(self, repo, tmp_path, env) -> None:
        self.repo, self.tmp, self.env = repo, tmp_path, env
        self.servers: list[Server] = []

    def start(self, name: str, command: list[str], port: int, ready: str | None) -> Server:
        server = Server(command, port, self.env, ROOT, self.tmp / f"{name}.log")
        self.servers.append(server)
        if ready:
            server.wait_ready(ready, timeout=240)
        return server

    @property
    def logs(self):
        return [s.log for s in self.servers]

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


@pytest.fixture
def stack(postgres_server, tmp_path):
    repo = copy_example_repo(tmp_path / "feature_repo")
    raw = yaml.safe_load(repo.config_path.read_text())
    raw["registry"] = {"type": "postgres", "dsn": postgres_server.database()}
    raw["monitoring"] = {
        "freshness": {"cron": "* * * * *"},
        "alerts": [{"type": "log", "path": str(tmp_path / "alerts.log")}],
    }
    repo.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    generate_small_data(repo)
    repo.cli("workspace", "create", "prod", "--live")
    repo.cli("apply", "--yes")

    home = tmp_path / "dagster_home"
    env = {**repo.env, "DAGSTER_HOME": str(home)}
    dagster_dsn = postgres_server.database()
    repo.cli(
        "dagster-instance", "--dsn", dagster_dsn, "--runs-per-backfill", "1", "-o", str(home / "dagster.yaml")
    )
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, check=True, capture_output=True)

    commands = compose_commands()
    ports = {"4000": free_port(), "3000": free_port(), "8800": free_port(), "8080": free_port()}
    workspace = yaml.safe_load((DEPLOY / "dagster" / "workspace.yaml").read_text())
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=ports["4000"])
    workspace_yaml = tmp_path / "workspace.yaml"
    workspace_yaml.write_text(yaml.safe_dump(workspace))

    running = Stack(repo, tmp_path, env)
    try:
        code = running.start(
            "code-server", local(commands["code-server"], ports, str(workspace_yaml)), 0, None
        )
        health = [
            str(BIN / "dagster"),
            "api",
            "grpc-health-check",
            "-p",
            str(ports["4000"]),
            "-h",
            "127.0.0.1",
        ]
        wait_for(
            "the code server answers",
            lambda: (
                code.process.poll() is None
                and subprocess.run(health, env=env, capture_output=True).returncode == 0
            ),
            240,
            [code.log],
        )
        running.webserver = running.start(
            "webserver",
            local(commands["dagster-webserver"], ports, str(workspace_yaml)),
            ports["3000"],
            "/server_info",
        )
        running.daemon = running.start(
            "daemon", local(commands["dagster-daemon"], ports, str(workspace_yaml)), 0, None
        )
        running.start("server", local(commands["featureplane-server"], ports, ""), ports["8800"], "/healthz")
        running.start("lookup", local(commands["lookup"], ports, ""), ports["8080"], "/healthz")
        yield running
    finally:
        running.stop()


def backfill(stack: Stack, partitions: list[str], timeout: float = 420) -> tuple[str, dict]:
    launched = graphql(
        stack.webserver.url,
        LAUNCH,
        {"params": {"partitionNames": partitions, "assetSelection": [{"path": VIEW}]}},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"], finished(stack, launched["backfillId"], timeout)


def finished(stack: Stack, backfill_id: str, timeout: float = 420) -> dict:
    def probe():
        status = graphql(stack.webserver.url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        return status if status["status"] in FINISHED else None

    return wait_for(f"backfill {backfill_id} finishes", probe, timeout, stack.logs)


def offline_version(stack: Stack) -> int | None:
    with stack.repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        return runtime.offline_store.version(state.table_id(VIEW[1]))


def asset_status(stack: Stack) -> dict:
    node = graphql(stack.webserver.url, ASSET, {"key": {"path": VIEW}})["assetNodeOrError"]
    return node


def test_the_deployed_stack_backfills_reruns_cancels_ticks_and_reloads(stack):
    url = stack.webserver.url

    # A backfill of three partitions: one run (single-run backfill policy), per-partition status, checks.
    _, status = backfill(stack, ["2026-10-25", "2026-10-26", "2026-10-27"])
    assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), status
    assert [r["status"] for r in status["runs"]] == ["SUCCESS"]
    node = asset_status(stack)
    assert node["partitionStats"]["numMaterialized"] == 3 and node["partitionStats"]["numFailed"] == 0
    # The quality checks ran with the materialization (freshness runs on its own schedule).
    checks = [c for c in node["assetChecksOrError"]["checks"] if c["name"] != "freshness"]
    assert checks and all(c["executionForLatestMaterialization"]["status"] == "SUCCEEDED" for c in checks), (
        checks
    )
    committed = offline_version(stack)
    assert committed is not None

    # The source disappears: the backfill fails, the alert sensor (on the daemon) reports the failed run,
    # and once the source is back the failed partitions are rerun from the failure.
    warehouse = str(stack.repo.config().warehouse_path)
    with duckdb.connect(warehouse) as con:
        con.execute("ALTER TABLE raw.transactions RENAME TO transactions_away")
    failed_id, status = backfill(stack, ["2026-10-28", "2026-10-29"])
    assert status["status"] in ("COMPLETED_FAILED", "FAILED") and status["runs"][0]["status"] == "FAILURE", (
        status
    )
    assert asset_status(stack)["partitionStats"]["numFailed"] == 2
    alerts = stack.tmp / "alerts.log"
    wait_for(
        "the alert sensor reports the failed run",
        lambda: alerts.exists() and "run_failure" in alerts.read_text(),
        180,
        stack.logs,
    )
    assert status["runs"][0]["id"] in alerts.read_text()
    with duckdb.connect(warehouse) as con:
        con.execute("ALTER TABLE raw.transactions_away RENAME TO transactions")
    rerun = graphql(url, RERUN, {"params": {"parentRunId": failed_id, "strategy": "FROM_FAILURE"}})
    rerun = rerun["reexecutePartitionBackfill"]
    assert rerun["__typename"] == "LaunchBackfillSuccess", rerun
    status = finished(stack, rerun["backfillId"])
    assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), status
    stats = asset_status(stack)["partitionStats"]
    assert stats["numMaterialized"] == 5 and stats["numFailed"] == 0, stats
    committed = offline_version(stack)

    # A run cancelled while it waits for the view's lock (held here, as a concurrent writer would):
    # it ends CANCELED and the offline table has no new commit.
    with stack.repo.runtime() as runtime:
        table_id = runtime.registry.load("prod").table_id(VIEW[1])
        lock_path = view_lock(runtime, table_id)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        launched = graphql(
            url, LAUNCH, {"params": {"partitionNames": ["2026-10-30"], "assetSelection": [{"path": VIEW}]}}
        )["launchPartitionBackfill"]

        def started_run():
            runs = graphql(url, STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]["runs"]
            return runs[0]["id"] if runs and runs[0]["status"] == "STARTED" else None

        run_id = wait_for("the run starts", started_run, 240, stack.logs)
        time.sleep(3)  # into the materialization, waiting for the lock
        assert graphql(url, TERMINATE, {"id": run_id})["terminateRun"]["__typename"] == "TerminateRunSuccess"
        wait_for(
            "the run is cancelled",
            lambda: graphql(url, RUN, {"id": run_id})["runOrError"]["status"] == "CANCELED",
            120,
            stack.logs,
        )
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert offline_version(stack) == committed
    assert asset_status(stack)["partitionStats"]["numMaterialized"] == 5

    # The freshness schedule (every minute here) ticks on the daemon and launches its run.
    selector = {
        "repositoryLocationName": "featureplane",
        "repositoryName": "__repository__",
        "scheduleName": "prod__freshness_checks_schedule",
    }

    def ticked():
        schedule = graphql(url, SCHEDULE, {"selector": selector})["scheduleOrError"]
        assert schedule["__typename"] == "Schedule", schedule
        return [t for t in schedule["scheduleState"]["ticks"] if t["status"] == "SUCCESS" and t["runIds"]]

    wait_for("a schedule tick launches a run", ticked, 150, stack.logs)

    # An apply to another workspace reaches the asset graph when the location reloads, with the same
    # webserver process.
    def keys():
        return {tuple(n["assetKey"]["path"]) for n in graphql(url, ASSET_KEYS)["assetNodes"]}

    stack.repo.cli("workspace", "create", "staging")
    stack.repo.cli("apply", "-w", "staging", "--yes")
    assert ("staging", "user_daily_spend") not in keys()
    reloaded = graphql(url, RELOAD, {"name": "featureplane"})["reloadRepositoryLocation"]
    assert reloaded["locationOrLoadError"]["__typename"] == "RepositoryLocation", reloaded
    assert ("staging", "user_daily_spend") in keys()
    # CI's apply step does both: apply, then reload the location it names.
    stack.repo.cli("workspace", "create", "canary")
    ci = subprocess.run(
        [str(ROOT / "scripts" / "ci" / "apply.sh")],
        env={**stack.env, "FEATUREPLANE": str(BIN / "featureplane"), "FEATUREPLANE_WORKSPACE": "canary", "DAGSTER_URL": url},
        cwd=stack.repo.root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert ci.returncode == 0, ci.stdout + ci.stderr
    assert "reloaded the Dagster code location featureplane" in ci.stdout
    assert ("canary", "user_daily_spend") in keys()
    assert stack.webserver.process.poll() is None and stack.daemon.process.poll() is None
    assert os.path.exists(stack.tmp / "server.log")


def argv_lists(command: list[str]) -> list[list[str]]:
    """The programs a compose command runs (each part of an ``sh -c "a && b"`` separately)."""
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [command]


def test_every_command_of_the_deployment_files_exists_and_starts():
    """What docker-compose.yml and the Helm values run is a command of this virtualenv, with these
    arguments' subcommands (each answers --help). The stack test runs the long-running ones."""
    commands = compose_commands()
    assert {"code-server", "dagster-webserver", "dagster-daemon", "featureplane-server", "lookup"} <= set(
        commands
    )
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    programs = [argv for command in commands.values() for argv in argv_lists(command)]
    programs.append(["dagster", "code-server", "start", *deployment["codeServerArgs"]])
    for argv in programs:
        words = list(itertools.takewhile(lambda part: not part.startswith("-"), argv))
        assert (BIN / words[0]).exists(), argv
        result = subprocess.run(
            [str(BIN / words[0]), *words[1:], "--help"], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (argv, result.stderr[-2000:])
