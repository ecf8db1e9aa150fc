"""The stream benchmark's arms (``run.py`` runs them): freshness through the real ingest and lookup
HTTP APIs, the processor's throughput over a backlog, Feast's push, and lookup latency."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORK = ROOT / "benchmarks" / ".work" / "stream"
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]

from common import feast_python  # noqa: E402

FRESH_VIEW = "user_transaction_counts_5m"  # offline=True: each batch is appended to its event log first
# The same features with offline=False (run.py's BENCH_VIEWS): the online commit alone, no event log.
FRESH_ONLINE_VIEW = "user_transaction_counts_5m_online"
SOURCE = "transactions_stream"


def _lookup_client():
    """The lookup benchmark's client (server start-up, keep-alive load, percentiles)."""
    spec = importlib.util.spec_from_file_location("lookup_bench", ROOT / "benchmarks" / "lookup" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["lookup_bench"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    module.WORK = WORK  # its servers' logs go to this benchmark's work directory
    return module


lookup = _lookup_client()
say, percentile = lookup.say, lookup.percentile


class Connection:
    """One keep-alive HTTP/1.1 connection to a server on 127.0.0.1."""

    def __init__(self, port: int, key: str) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.auth = {"Authorization": f"Tecton-key {key}"}

    def post(self, path: str, payload: dict) -> tuple[int, dict]:
        self.sock.sendall(lookup.http_request(path, payload, self.auth))
        status = int(self.reader.readline().split(b" ", 2)[1])
        length = 0
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, orjson.loads(self.reader.read(length))

    def close(self) -> None:
        self.sock.close()


def push_http(port: int, key: str, events: list[dict], per_request: int) -> float:
    """Push ``events`` through the ingest API of the server on ``port``; seconds taken."""
    connection = Connection(port, key)
    started = time.perf_counter()
    try:
        for i in range(0, len(events), per_request):
            records = [{"record": e} for e in events[i : i + per_request]]
            status, body = connection.post(
                "/api/v1/ingest", {"workspaceName": "prod", "records": {SOURCE: records}}
            )
            if status != 200:
                raise SystemExit(f"ingest failed ({status}): {body}")
        return time.perf_counter() - started
    finally:
        connection.close()


def get_features(service: str, user: str) -> dict:
    params = {"workspaceName": "prod", "featureServiceName": service, "joinKeyMap": {"user_id": user}}
    return {"params": params}


# -- arms ------------------------------------------------------------------------------------------


@dataclass
class Freshness:
    poll_interval: float
    view: str
    seconds: list[float] = field(default_factory=list)  # acknowledgement -> value served
    ingest_seconds: list[float] = field(default_factory=list)  # the ingest request's round trip
    lookups: int = 0  # lookups sent while waiting

    def row(self) -> dict:
        return {
            "view": self.view,
            "poll_interval_ms": self.poll_interval * 1000,
            "samples": len(self.seconds),
            "p50_ms": percentile(self.seconds, 0.5) * 1000,
            "p99_ms": percentile(self.seconds, 0.99) * 1000,
            "max_ms": max(self.seconds) * 1000,
            "ingest_p50_ms": percentile(self.ingest_seconds, 0.5) * 1000,
            "lookups_per_sample": self.lookups / len(self.seconds),
        }


def freshness(
    config_path: Path, port: int, key: str, samples: int, poll_interval: float, view: str, service: str
) -> Freshness:
    """One event at a time through the ingest API; the time until the lookup API serves ``view``'s
    value (through ``service``)."""
    log = open(WORK / f"stream-run-{view}-{poll_interval}.log", "wb")  # noqa: SIM115 - closed below
    processor = subprocess.Popen(
        [str(Path(sys.executable).parent / "featureplane"), "stream", "run", "-w", "prod", "--view",
         view, "--poll-interval", str(poll_interval), "--config", str(config_path)],
        cwd=WORK, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ingest, reads = Connection(port, key), Connection(port, key)
    result = Freshness(poll_interval, view)
    rng = random.Random(3)
    counts: dict[str, int] = {}
    try:
        for i in range(samples + 5):  # the first five warm the processor up
            user = f"fresh_{view}_{poll_interval}_{i % 40}"
            record = {"transaction_id": f"f{i}", "user_id": user, "merchant_id": "m", "amount": 1.0,
                      "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z")}  # fmt: skip
            sent = time.perf_counter()
            status, body = ingest.post(
                "/api/v1/ingest", {"workspaceName": "prod", "records": {SOURCE: [{"record": record}]}}
            )
            acknowledged = time.perf_counter()
            if status != 200:
                raise SystemExit(f"ingest failed ({status}): {body}")
            counts[user] = counts.get(user, 0) + 1
            lookups = 0
            while True:
                status, body = reads.post("/api/v1/feature-service/get-features", get_features(service, user))
                lookups += 1
                if status == 200 and int(body["result"]["features"][0]) >= counts[user]:
                    break
                if time.perf_counter() - acknowledged > 30 or processor.poll() is not None:
                    raise SystemExit(f"event {i} not served within 30 s ({status} {body}): see {log.name}")
                time.sleep(0.001)
            served = time.perf_counter()
            if i >= 5:
                result.seconds.append(served - acknowledged)
                result.ingest_seconds.append(acknowledged - sent)
                result.lookups += lookups
            time.sleep(rng.uniform(0, 0.03))  # out of step with the processor's polls
    finally:
        ingest.close()
        reads.close()
        os.kill(processor.pid, signal.SIGTERM)
        processor.wait(timeout=30)
        log.close()
    return result


def throughput(config_path: Path, view: str, batch_size: int) -> dict:
    """The processor applying the view's whole backlog, in this process, timed per phase: reading the
    ingest log, the processor's own work, and the store's commit (tiles, online rows, checkpoints)."""
    from featureplane.config import load_config
    from featureplane.runtime import Runtime
    from featureplane.streams.runner import open_stream

    with Runtime(load_config(config_path)) as runtime:
        processor, source = open_stream(runtime, "prod", view)
        store = processor.store
        commit_seconds = [0.0]
        commit = store.commit_tiles

        def timed_commit(*args, **kwargs):
            began = time.perf_counter()
            try:
                return commit(*args, **kwargs)
            finally:
                commit_seconds[0] += time.perf_counter() - began

        store.commit_tiles = timed_commit  # type: ignore[method-assign]
        read_seconds = process_seconds = 0.0
        applied = batches = late = invalid = entity_writes = 0
        started = time.perf_counter()
        while True:
            began = time.perf_counter()
            records = source.read(processor.state().positions, batch_size)
            read_seconds += time.perf_counter() - began
            if not records:
                break
            began = time.perf_counter()
            batch = processor.process(records)
            process_seconds += time.perf_counter() - began
            applied, late, invalid = applied + batch.applied, late + batch.late, invalid + batch.invalid
            entity_writes += len({r.data["user_id"] for r in records})
            batches += 1
        seconds = time.perf_counter() - started
    return {
        "view": view,
        "events": applied,
        "late": late,
        "invalid": invalid,
        "batches": batches,
        "batch_size": batch_size,
        "entity_writes": entity_writes,  # entities touched, summed over batches
        "seconds": seconds,
        "events_per_second": applied / seconds,
        "read_log_seconds": read_seconds,
        "process_seconds": process_seconds - commit_seconds[0],
        "commit_seconds": commit_seconds[0],
    }


def profile_shares(run) -> dict:
    """Run ``run()`` under cProfile; the shares of its own time (tottime) by where it is spent."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(run)
    groups = {"SQLite statements": 0.0, "JSON (orjson)": 0.0, "tiles (merge, rows)": 0.0, "other": 0.0}
    for (filename, _, function), (_, _, own, _, _) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        if "sqlite3" in function:
            groups["SQLite statements"] += own
        elif "orjson" in function:
            groups["JSON (orjson)"] += own
        elif filename.endswith(("streams/tiles.py", "aggregation/tiles.py")):
            groups["tiles (merge, rows)"] += own
        else:
            groups["other"] += own
    total = sum(groups.values())
    return {name: seconds / total for name, seconds in groups.items()}


def feast_push(events: list[dict], batch_sizes: list[int]) -> dict:
    """Feast's push of the same events, in its own virtualenv, at each batch size: {size: result}."""
    import pandas as pd

    path = WORK / "events.parquet"
    frame = pd.DataFrame(events)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame.to_parquet(path, index=False)
    python = feast_python()
    sizes = ",".join(str(b) for b in batch_sizes)
    out = subprocess.run(
        [str(python), str(HERE / "feast_push.py"), str(path), str(WORK), sizes],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"feast push failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    expected = next(e for e in reversed(events) if e["user_id"] == result["check"]["user_id"])
    if abs(result["check"]["amount"] - expected["amount"]) > 1e-9:
        raise SystemExit(f"Feast's online store disagrees: {result['check']} vs {expected}")
    return result


def lookup_latency(port: int, key: str, users: list[str], seconds: float, rounds: int) -> dict:
    """get-features (one key, one client) of the stream view against the batch view, rounds alternated."""
    rng = random.Random(5)
    chosen = [rng.choice(users) for _ in range(200)]
    auth = {"Authorization": f"Tecton-key {key}"}
    requests = {
        service: [
            lookup.http_request("/api/v1/feature-service/get-features", get_features(service, u), auth)
            for u in chosen
        ]
        for service in ("stream_lookup", "batch_lookup")
    }
    samples = {service: lookup.Sample() for service in requests}
    order = list(requests)
    for number in range(rounds):
        for service in order[number % 2 :] + order[: number % 2]:
            lookup.load(port, requests[service], 1, 0.5, None)
            lookup.load(port, requests[service], 1, seconds, samples[service])
    out = {}
    for service, sample in samples.items():
        out[service] = {
            "p50_ms": percentile(sample.latencies, 0.5) * 1000,
            "p99_ms": percentile(sample.latencies, 0.99) * 1000,
            "requests_per_second": sample.requests / sample.seconds,
            "errors": sample.errors,
        }
    out["p50_ratio"] = out["stream_lookup"]["p50_ms"] / out["batch_lookup"]["p50_ms"]
    out["p99_ratio"] = out["stream_lookup"]["p99_ms"] / out["batch_lookup"]["p99_ms"]
    return out


def tiles_per_entity(config_path: Path, users: list[str]) -> tuple[dict, list[str]]:
    """How many tiles the lookups roll up per user, for each view (the work a lookup does), over the
    users both views hold a row for; and those users."""
    from featureplane.config import load_config
    from featureplane.runtime import Runtime

    with Runtime(load_config(config_path)) as runtime:
        state = runtime.registry.load("prod")
        views = ("stream_counts_1d", "batch_counts_1d")
        rows = {v: runtime.online_store.read([(state.table_id(v), (u,)) for u in users]) for v in views}
        both = [i for i in range(len(users)) if all(rows[v][i] is not None for v in views)]
        out = {
            v: {
                "users_with_a_row": sum(r is not None for r in rows[v]),
                "mean_tiles": sum(len(rows[v][i].values[-1]) for i in both) / len(both),
            }
            for v in views
        }
    return out, [users[i] for i in both]
