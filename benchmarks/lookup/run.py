"""Lookup benchmark: featureplane's lookup API against a floor and against Feast's feature server.

    .venv/bin/python benchmarks/lookup/run.py            # prints the table
    .venv/bin/python benchmarks/lookup/run.py --write    # and puts it in benchmarks/README.md

Arms, each a server process on 127.0.0.1 over the same data, driven by the same client:
- ``featureplane``: ``featureplane serve`` with API keys on, the example's ``fraud_detection`` service
  (two views, eight features) materialized into the SQLite online store.
- ``floor``: a bare HTTP/1.1 server that answers the stored bytes of one raw SQLite read of the same
  rows (``floor_server.py``): what any lookup service over this store costs at the least.
- ``feast``: ``feast serve`` (Feast's Python feature server, one worker like featureplane's one
  process, access log and worker recycling off) over the same rows in Feast's SQLite online store.
  Feast is installed into its own virtualenv under ``benchmarks/.work/`` on the first run.

Cases: ``get-features`` for 1 key and ``get-features-batch`` for 100 keys (Feast: one
``/get-online-features`` call with 1 or 100 entities). Each case runs at each concurrency in rounds
that rotate the arms, so load from elsewhere on the machine falls on all arms alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORK = ROOT / "benchmarks" / ".work" / "lookup"
FEAST_VENV = ROOT / "benchmarks" / ".work" / "feast-venv"
FEAST_VERSION = "0.67.0"
README = ROOT / "benchmarks" / "README.md"
BEGIN, END = "<!-- lookup:begin -->", "<!-- lookup:end -->"
SERVICE = "fraud_detection"
SERVICES = """
from feature_views.transactions import user_daily_spend
from feature_views.users import user_profile
from featureplane import FeatureService

fraud_detection = FeatureService(
    name="fraud_detection", features=[user_daily_spend, user_profile[["age", "country", "credit_limit"]]]
)
"""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- data ------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    config: Path
    key: str
    online_db: Path
    table_ids: list[str]
    users: list[str]
    data: Path


def prepare_featureplane(users: int, days: int) -> Prepared:
    from featureplane.access import create_api_key
    from featureplane.config import load_config
    from featureplane.examples.fraud_data import DatasetSize, generate
    from featureplane.materialization.materialize import materialize
    from featureplane.repo.planning import apply_plan, plan_repository
    from featureplane.runtime import Runtime

    repo = WORK / "feature_repo"
    shutil.copytree(
        ROOT / "feature_repo",
        repo,
        ignore=shutil.ignore_patterns(".featureplane", "__pycache__", "featureplane.yaml", "dbt_features"),
    )
    # The service the floor reads: two batch views, eight features (the example's fraud_detection
    # also has aggregates and a realtime view, which the floor cannot serve).
    (repo / "feature_services.py").write_text(SERVICES)
    (repo / "featureplane.yaml").write_text(
        "project: lookup_benchmark\ndata_dir: .featureplane\nserving: {registry_refresh_seconds: 5, auth: true}\n"
    )
    config = load_config(repo / "featureplane.yaml")
    end = datetime.now(UTC).date()
    say(f"generating {users:,} users x {days} days of transactions ...")
    generate(config.warehouse_path, size=DatasetSize(users=users, days=days), end=end)
    first = datetime.combine(end - timedelta(days=days), datetime.min.time())
    last = datetime.combine(end, datetime.min.time())
    with Runtime(config) as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        state = runtime.registry.load("prod")
        for view in ("user_daily_spend", "user_profile"):
            say(f"materializing {view} for [{first.date()}, {last.date()}) ...")
            materialize(runtime, state, view, first, last)
        data = WORK / "feast_data"
        data.mkdir()
        for view in ("user_daily_spend", "user_profile"):
            spec = state.feature_view(view)
            frame = runtime.offline_store.read(state.table_id(view), spec).to_pandas()
            latest = frame.sort_values(spec.timestamp_field).groupby("user_id").tail(1)
            latest.to_parquet(data / f"{view}.parquet", index=False)
        table_ids = [state.table_id(v) for v in ("user_daily_spend", "user_profile")]
    key = create_api_key(config, "prod", "consumer", "lookup benchmark")
    user_ids = [f"user_{i}" for i in range(users)]
    return Prepared(repo / "featureplane.yaml", key, config.online_path, table_ids, user_ids, data)


def ensure_feast() -> Path:
    python = FEAST_VENV / "bin" / "python"
    if not (FEAST_VENV / "bin" / "feast").exists():
        say(f"installing feast=={FEAST_VERSION} into {FEAST_VENV.relative_to(ROOT)} (first run only) ...")
        subprocess.run(
            [shutil.which("python3.11") or "python3.11", "-m", "venv", str(FEAST_VENV)], check=True
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"feast=={FEAST_VERSION}"],
            check=True,
        )
    return python


# -- servers ---------------------------------------------------------------------------------------


@dataclass
class Arm:
    name: str
    port: int
    process: subprocess.Popen
    requests: dict[str, list[bytes]] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start(name: str, args: list[str], cwd: Path, env: dict | None = None, health: str = "/healthz") -> Arm:
    port = free_port()
    args = [a.replace("{port}", str(port)) for a in args]
    log = open(WORK / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the server's life
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode}: see {WORK / (name + '.log')}")
        try:
            if health:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{health}", timeout=1):
                    return Arm(name, port, process)
            else:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return Arm(name, port, process)
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{name} did not start within 120 s: see {WORK / (name + '.log')}")


def http_request(path: str, payload: dict, headers: dict[str, str] | None = None) -> bytes:
    body = orjson.dumps(payload)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def build_requests(arm: Arm, prepared: Prepared, batch_sizes: list[int], count: int = 200) -> None:
    rng = random.Random(7)
    for size in batch_sizes:
        requests = []
        for _ in range(count):
            users = rng.sample(prepared.users, size)
            if arm.name == "feast":
                payload = {"feature_service": SERVICE, "entities": {"user_id": users}}
                requests.append(http_request("/get-online-features", payload))
                continue
            params: dict = {"workspaceName": "prod", "featureServiceName": SERVICE}
            if size == 1:
                params["joinKeyMap"] = {"user_id": users[0]}
                path = "/api/v1/feature-service/get-features"
            else:
                params["requestData"] = [{"joinKeyMap": {"user_id": u}} for u in users]
                path = "/api/v1/feature-service/get-features-batch"
            requests.append(
                http_request(path, {"params": params}, {"Authorization": f"Tecton-key {prepared.key}"})
            )
        arm.requests[str(size)] = requests


# -- the client ------------------------------------------------------------------------------------


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0


def exchange(sock: socket.socket, reader, request: bytes) -> int:
    sock.sendall(request)
    status = int(reader.readline().split(b" ", 2)[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    reader.read(length)
    return status


def load(port: int, requests: list[bytes], concurrency: int, seconds: float, sample: Sample | None) -> None:
    """Each of ``concurrency`` threads sends requests back to back on its own keep-alive connection."""
    ready = threading.Barrier(concurrency + 1)
    lock = threading.Lock()
    stop_at = [0.0]

    def worker(offset: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        latencies, errors, i = [], 0, offset
        ready.wait()
        while True:
            began = time.perf_counter()
            if began >= stop_at[0]:
                break
            if exchange(sock, reader, requests[i % len(requests)]) != 200:
                errors += 1
            latencies.append(time.perf_counter() - began)
            i += 1
        sock.close()
        if sample is not None:
            with lock:
                sample.latencies += latencies
                sample.requests += len(latencies)
                sample.errors += errors

    threads = [threading.Thread(target=worker, args=(n * 37,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    ready.wait()
    for thread in threads:
        thread.join()
    if sample is not None:
        sample.seconds += time.perf_counter() - began


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- checks and report -----------------------------------------------------------------------------


def check_same_answers(arms: dict[str, Arm], prepared: Prepared) -> None:
    """The arms serve the same values (featureplane and Feast), so they do comparable work."""
    user = prepared.users[1]
    fp = arms["featureplane"]
    with socket.create_connection(("127.0.0.1", fp.port)) as sock:
        request = http_request(
            "/api/v1/feature-service/get-features",
            {
                "params": {
                    "workspaceName": "prod",
                    "featureServiceName": SERVICE,
                    "joinKeyMap": {"user_id": user},
                }
            },
            {"Authorization": f"Tecton-key {prepared.key}"},
        )
        sock.sendall(request)
        ours = orjson.loads(sock.recv(65536).split(b"\r\n\r\n", 1)[1])["result"]["features"]
    if "feast" in arms:
        with socket.create_connection(("127.0.0.1", arms["feast"].port)) as sock:
            sock.sendall(
                http_request(
                    "/get-online-features", {"feature_service": SERVICE, "entities": {"user_id": [user]}}
                )
            )
            raw = b""
            while b"\r\n\r\n" not in raw or len(raw.split(b"\r\n\r\n", 1)[1]) < _length(raw):
                raw += sock.recv(65536)
            answer = orjson.loads(raw.split(b"\r\n\r\n", 1)[1])
        names = answer["metadata"]["feature_names"]
        theirs = {n: r["values"][0] for n, r in zip(names, answer["results"], strict=True)}
        if round(theirs["spend"], 6) != round(ours[0], 6) or str(theirs["age"]) != ours[5]:
            raise SystemExit(f"the arms disagree for {user}: featureplane {ours}, feast {theirs}")
    say(f"featureplane and feast agree for {user}: {ours}")


def _length(raw: bytes) -> int:
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line[15:])
    return 0


def report(results: dict, arms: list[str], args: argparse.Namespace) -> str:
    lines = [
        f"Run {date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} CPU(s), Python "
        f"{platform.python_version()}; {args.users:,} users; {args.rounds} round(s) of {args.seconds:g} s per "
        "arm, case and concurrency; client and servers on the same machine (127.0.0.1).",
        "",
        "| case | concurrency | arm | p50 ms | p99 ms | requests/s | p50 vs floor | throughput vs feast |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for (case, concurrency), by_arm in results.items():
        floor = by_arm.get("floor")
        feast = by_arm.get("feast")
        for arm in arms:
            s = by_arm[arm]
            p50, p99 = percentile(s.latencies, 0.5), percentile(s.latencies, 0.99)
            rps = s.requests / s.seconds
            vs_floor = f"{p50 / percentile(floor.latencies, 0.5):.2f}x" if floor else ""
            vs_feast = f"{rps / (feast.requests / feast.seconds):.1f}x" if feast else ""
            errors = f" ({s.errors} errors)" if s.errors else ""
            lines.append(
                f"| {case} | {concurrency} | {arm}{errors} | {p50 * 1000:.2f} | {p99 * 1000:.2f} | {rps:,.0f} | "
                f"{vs_floor} | {vs_feast} |"
            )
        fp = by_arm["featureplane"]
        ratio = percentile(fp.latencies, 0.5) / percentile(floor.latencies, 0.5)
        verdict = f"{case} at concurrency {concurrency}: p50 {ratio:.2f}x the floor ({'within' if ratio <= 2 else 'over'} 2x)"
        if feast:
            speedup = (fp.requests / fp.seconds) / (feast.requests / feast.seconds)
            verdict += f", throughput {speedup:.1f}x Feast's ({'meets' if speedup >= 5 else 'misses'} 5x)"
        verdicts.append(f"- {verdict}")
    return "\n".join([*lines, "", *verdicts])


def write_readme(table: str) -> None:
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    section = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    README.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=3, help="days of transactions to generate")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per arm, case, round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated client concurrencies")
    parser.add_argument("--skip-feast", action="store_true", help="leave out the Feast arm")
    parser.add_argument("--write", action="store_true", help=f"put the table into {README.relative_to(ROOT)}")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    prepared = prepare_featureplane(args.users, args.days)
    bin_dir = Path(sys.executable).parent
    arms: dict[str, Arm] = {}
    try:
        arms["floor"] = start(
            "floor",
            [
                sys.executable,
                str(HERE / "floor_server.py"),
                str(prepared.online_db),
                "{port}",
                *prepared.table_ids,
            ],
            WORK,
            health="",
        )
        arms["featureplane"] = start(
            "featureplane",
            [str(bin_dir / "featureplane"), "serve", "--port", "{port}", "--config", str(prepared.config)],
            WORK,
        )
        if not args.skip_feast:
            python = ensure_feast()
            feast_repo = WORK / "feast_repo"
            say("applying the Feast repository and writing its online store ...")
            subprocess.run(
                [str(python), str(HERE / "feast_repo.py"), str(feast_repo), str(prepared.data)], check=True
            )
            arms["feast"] = start(
                "feast",
                [
                    str(FEAST_VENV / "bin" / "feast"),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                    "--workers",
                    "1",
                    "--no-access-log",
                    "--max-requests",
                    "0",
                ],
                feast_repo,
                health="/health",
            )
        check_same_answers(arms, prepared)
        cases = {"1": "get-features, 1 key", "100": "get-features-batch, 100 keys"}
        for arm in arms.values():
            build_requests(arm, prepared, [int(size) for size in cases])
        order = list(arms)
        results: dict = {}
        for size, case in cases.items():
            for concurrency in concurrencies:
                by_arm = {name: Sample() for name in order}
                for round_number in range(args.rounds):
                    rotated = order[round_number % len(order) :] + order[: round_number % len(order)]
                    for name in rotated:
                        arm = arms[name]
                        load(arm.port, arm.requests[size], concurrency, 0.5, None)  # warm up
                        load(arm.port, arm.requests[size], concurrency, args.seconds, by_arm[name])
                say(
                    f"{case}, concurrency {concurrency}: "
                    + ", ".join(
                        f"{n} p50 {percentile(s.latencies, 0.5) * 1000:.2f} ms {s.requests / s.seconds:,.0f}/s"
                        for n, s in by_arm.items()
                    )
                )
                results[(case, concurrency)] = by_arm
    finally:
        for arm in arms.values():
            arm.stop()
    table = report(results, order, args)
    print(table)
    if args.write:
        write_readme(table)
        say(f"wrote the table into {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
