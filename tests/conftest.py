"""Shared fixtures: throwaway feature repositories, warehouses, Dagster homes and servers.

Every test works in its own temporary directory with its own registry, warehouse and stores; servers
listen on free ports of 127.0.0.1 and are stopped by process id.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_REPO = ROOT / "feature_repo"
EXAMPLE_DBT = ROOT / "dbt"
BIN = Path(sys.executable).parent
# The small example dataset: 10 days ending 2026-11-01 (partitions 2026-10-22 .. 2026-10-31).
SMALL_END = date(2026, 11, 1)
SMALL_DAYS = 10
SMALL_USERS = 300

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(root: Path, extra: str = "") -> Path:
    """A featureplane.yaml for tests. API keys are off (``serving.auth: false``) so that tests about
    other things can call the lookup API plainly; tests about keys turn them on with
    ``Repo.set_config("serving", auth=True)``."""
    path = root / "featureplane.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            project: test
            data_dir: .featureplane
            registry: {type: sqlite, path: .featureplane/registry.db}
            engine: {type: duckdb, warehouse: .featureplane/warehouse.duckdb}
            offline_store: {type: delta, path: .featureplane/offline}
            online_store: {type: sqlite, path: .featureplane/online.db}
            serving: {registry_refresh_seconds: 0.5, auth: false}
            """
        )
        + textwrap.dedent(extra)
    )
    return path


def write_repo(root: Path, files: dict[str, str], config_extra: str = "") -> Path:
    """A feature repository made of the given files (dedented), with a featureplane.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    return write_config(root, config_extra)


@dataclass
class Repo:
    root: Path
    config_path: Path

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["FEATUREPLANE_CONFIG"] = str(self.config_path)
        return env

    def config(self):
        from featureplane.config import load_config

        return load_config(self.config_path)

    def set_config(self, section: str, **values) -> None:
        """Change settings of one featureplane.yaml section, e.g. ``set_config("serving", auth=True)``."""
        import yaml

        raw = yaml.safe_load(self.config_path.read_text())
        raw[section] = {**(raw.get(section) or {}), **values}
        self.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))

    def runtime(self):
        from featureplane.runtime import Runtime

        return Runtime(self.config())

    def cli(
        self, *args: str, check: bool = True, input: str | None = None, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        return run_cli(*args, cwd=self.root, env={**self.env, **(env or {})}, check=check, input=input)


def run_cli(
    *args: str, cwd: Path, env: dict, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(BIN / "featureplane"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        input=input,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"featureplane {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def copy_dbt_project(target: Path) -> Path:
    """A copy of dbt/ with its parsed manifest (parsed here once if a file changed), so the copy needs
    no dbt parse of its own."""
    from featureplane.dbt import DbtProject, prepare_manifest

    prepare_manifest(DbtProject(project_dir=EXAMPLE_DBT, profiles_dir=EXAMPLE_DBT))
    shutil.copytree(EXAMPLE_DBT, target, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    (target / "target").mkdir()
    for name in ("manifest.json", "partial_parse.msgpack", "featureplane_manifest.fingerprint"):
        if (EXAMPLE_DBT / "target" / name).exists():
            shutil.copy(EXAMPLE_DBT / "target" / name, target / "target" / name)
    return target


def copy_example_repo(target: Path, config_extra: str = "", *, dbt: bool = True) -> Repo:
    """A copy of feature_repo/ and, beside it, of the dbt project it reads. With ``dbt=False``, the
    example without what is built on dbt (``dbt_features/`` and the dbt section)."""
    ignored = [".featureplane", "__pycache__", "featureplane.yaml"] + ([] if dbt else ["dbt_features"])
    shutil.copytree(EXAMPLE_REPO, target, ignore=shutil.ignore_patterns(*ignored))
    if not dbt:
        return Repo(target, write_config(target, textwrap.dedent(config_extra)))
    copy_dbt_project(target.parent / "dbt")
    return Repo(target, write_config(target, "dbt: {project_dir: ../dbt}\n" + textwrap.dedent(config_extra)))


def generate_small_data(
    repo: Repo, *, users: int = SMALL_USERS, days: int = SMALL_DAYS, end: date = SMALL_END, seed: int = 7
) -> None:
    from featureplane.examples.fraud_data import DatasetSize, generate

    generate(repo.config().warehouse_path, size=DatasetSize(users=users, days=days), end=end, seed=seed)


@pytest.fixture
def example_repo(tmp_path: Path) -> Repo:
    """A copy of feature_repo/ with a small dataset in its own warehouse."""
    repo = copy_example_repo(tmp_path / "feature_repo")
    generate_small_data(repo)
    return repo


@pytest.fixture
def applied_example(example_repo: Repo) -> Repo:
    """The example repository applied to a live workspace ``prod``."""
    example_repo.cli("workspace", "create", "prod", "--live")
    example_repo.cli("apply", "--yes")
    return example_repo


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "scripts" / "dagster.yaml", home / "dagster.yaml")
    return home


def run_dagster(
    args: list[str], repo: Repo, home: Path, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    env = {**repo.env, "DAGSTER_HOME": str(home), **(env or {})}
    result = subprocess.run(
        [str(BIN / "dagster"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"dagster {' '.join(args)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result


class Server:
    """A process serving HTTP on 127.0.0.1, stopped by its process id."""

    def __init__(self, args: list[str], port: int, env: dict, cwd: Path, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, path: str = "/healthz", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=1):
                    return
            except urllib.error.HTTPError:  # it answers (a lookup server not ready yet says 503)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not answer {path} within {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log_file.close()


@pytest.fixture
def lookup_server(tmp_path: Path) -> Iterator:
    """Start ``featureplane serve`` for a repository: ``server = lookup_server(repo)``."""
    servers: list[Server] = []

    def start(repo: Repo, extra_env: dict | None = None) -> Server:
        port = free_port()
        server = Server(
            [str(BIN / "featureplane"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            port,
            {**repo.env, **(extra_env or {})},
            repo.root,
            tmp_path / f"serve-{port}.log",
        )
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


def post_json(url: str, payload: dict | bytes, headers: dict | None = None) -> tuple[int, dict]:
    import json

    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# -- AWS stand-ins (DynamoDB via dynalite, S3 via moto's server) -----------------------------------


@pytest.fixture(scope="session")
def aws_credentials() -> Iterator[None]:
    """Dummy credentials and region for boto3, for the whole session (and the processes it starts)."""
    from aws_servers import AWS_ENV

    with pytest.MonkeyPatch.context() as patch:
        for key, value in AWS_ENV.items():
            patch.setenv(key, value)
        yield


@pytest.fixture(scope="session")
def dynalite(aws_credentials, tmp_path_factory) -> Iterator[str]:
    """A DynamoDB-compatible server (dynalite) on 127.0.0.1; yields its endpoint URL."""
    from aws_servers import start_dynalite

    server = start_dynalite(tmp_path_factory.mktemp("dynalite"))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def moto_server(aws_credentials, tmp_path_factory) -> Iterator[str]:
    """moto's server (S3 and more) on 127.0.0.1; yields its endpoint URL."""
    from aws_servers import start_moto

    server = start_moto(tmp_path_factory.mktemp("moto"), BIN)
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def kinesalite_server(aws_credentials, tmp_path_factory) -> Iterator[str]:
    """kinesalite, a Kinesis-compatible server that models resharding, on 127.0.0.1; yields its URL."""
    from aws_servers import start_kinesalite

    server = start_kinesalite(tmp_path_factory.mktemp("kinesalite"))
    yield server.url
    server.stop()


@pytest.fixture
def table_prefix() -> str:
    """A DynamoDB table prefix of this test's own, so tests sharing a server never meet."""
    import uuid

    return f"t{uuid.uuid4().hex[:10]}_"


class AlertReceiver:
    """An HTTP server on 127.0.0.1 that records every POSTed JSON body (webhooks, Slack)."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []
        self.status = 200

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        receiver = self
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def paths(self) -> list[str]:
        return [r["path"] for r in self.received]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def alert_receiver() -> Iterator[AlertReceiver]:
    receiver = AlertReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp_server() -> Iterator:
    """A local SMTP server (aiosmtpd) on a free port of 127.0.0.1; ``.messages`` holds what it got."""
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.messages: list = []

        async def handle_DATA(self, server, session, envelope) -> str:
            message = message_from_bytes(envelope.content, policy=policy.default)
            message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
            self.messages.append(message)
            return "250 OK"

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port  # type: ignore[attr-defined]
    yield inbox
    controller.stop()


# -- a local Snowflake ------------------------------------------------------------------------------


# The stand-in accepts any password; a distinctive one lets tests prove it never shows up anywhere.
SNOWFLAKE_PASSWORD_ENV = "FEATUREPLANE_TEST_SNOWFLAKE_PASSWORD"
SNOWFLAKE_PASSWORD = "pw-7Qx!r2Lm9-never-print-me"


@dataclass
class SnowflakeStandIn:
    """fakesnow's server on 127.0.0.1, reached through the real Snowflake connector."""

    port: int
    process: subprocess.Popen

    def database(self) -> str:
        """A fresh database name: tests share the server, not their data."""
        import uuid

        return f"TEST_{uuid.uuid4().hex[:12].upper()}"


@pytest.fixture(scope="session")
def snowflake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnowflakeStandIn]:
    port = free_port()
    log = open(tmp_path_factory.mktemp("snowflake") / "stand-in.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "snowflake_stand_in.py"), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the Snowflake stand-in exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("the Snowflake stand-in did not start within 60s") from None
            time.sleep(0.1)
    os.environ[SNOWFLAKE_PASSWORD_ENV] = SNOWFLAKE_PASSWORD
    yield SnowflakeStandIn(port, process)
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator:
    """One PostgreSQL cluster for the session, on a free port (tests each take a database of their own).

    Its directory is outside pytest's temporary root, which only root may enter: as root, the server
    runs as the ``postgres`` user."""
    import tempfile

    from featureplane.util.local_postgres import LocalPostgres

    directory = Path(tempfile.mkdtemp(prefix="featureplane-postgres-"))
    server = LocalPostgres(directory)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres_server) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.database()
