"""Cold start of the Lambda lookup handler versus a bare boto3 handler, in fresh processes.

    .venv/bin/python benchmarks/lambda_cold_start.py [--runs 30] [--no-readme]

Arms, alternated run by run in fresh interpreters (so each run pays every import):

- bare: ``import boto3`` and create a DynamoDB client: the least any DynamoDB-reading handler does.
- featureplane: import ``featureplane.serving.aws_lambda`` from the package that deploy/lambda/build.py
  builds (unpacked, precompiled, as Lambda runs it) with Lambda's environment, which initialises it: reads
  the serving snapshot of the example repository (a local file here; S3 in AWS), builds every live
  workspace's snapshot and creates the DynamoDB client.

Each process times itself, wall-clock and CPU, from its first statement to the end of initialisation
(interpreter start-up is the same for every arm and left out). Reports median and p90 per arm and the
differences; the budget is 150 ms over the bare handler, judged on CPU time, which a busy machine does not
stretch (wall-clock times of every arm grow with the machine's load). The results table is written into
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
BUDGET_MS = 150.0
START, END = "<!-- lambda_cold_start:start -->", "<!-- lambda_cold_start:end -->"
ARMS = (
    "bare handler: import boto3 + DynamoDB client",
    "featureplane handler, snapshot in a file",
    "featureplane handler, snapshot on S3 (moto on 127.0.0.1)",
)

BARE = """
import time
started, cpu = time.perf_counter(), time.process_time()
import boto3
client = boto3.client("dynamodb", region_name="us-east-1")
def handler(event, context):
    return client
print((time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000)
"""
FEATUREPLANE = """
import os, time
started, cpu = time.perf_counter(), time.process_time()
import featureplane.serving.aws_lambda as module
assert module._service is not None, module._init_error
elapsed = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
import sys
outside = [m.__file__ for n, m in list(sys.modules.items()) if n.startswith("featureplane") and
           not m.__file__.startswith(os.environ["PYTHONPATH"])]
assert not outside, outside
assert module._service.online_store._client is not None
assert module._service.snapshots._snapshots.keys() == {"prod", "staging"}
print(*elapsed)
"""


def export_example_snapshot(work: Path) -> Path:
    """The example repository applied to a live workspace, exported as a serving snapshot."""
    from featureplane.config import load_config
    from featureplane.registry.plan import build_plan
    from featureplane.registry.snapshot import FileLocation, export_snapshot
    from featureplane.registry.sqlite import SQLiteRegistry
    from featureplane.repo.loader import load_repository
    from featureplane.repo.validation import compile_repository

    # The whole example, with the views built on and declared in dbt (loading only reads files).
    repo = ROOT / "feature_repo"
    definitions = compile_repository(load_repository(repo, load_config(repo)))
    registry = SQLiteRegistry(work / "registry.db")
    for name in ("prod", "staging"):
        registry.create_workspace(name, live=True)
        registry.apply(build_plan(name, True, 0, registry.load(name).definitions, definitions))
    target = FileLocation(work / "serving.json")
    export_snapshot(registry, target, "fraud_detection")
    return target.path


def unpack_package(work: Path) -> Path:
    """The Lambda zip built by deploy/lambda/build.py, unpacked as Lambda does into /var/task."""
    import zipfile

    sys.path.insert(0, str(ROOT / "deploy" / "lambda"))
    from build import build

    arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    archive = build(work / "featureplane-lookup.zip", arch)
    task = work / "task"
    with zipfile.ZipFile(archive) as package:
        package.extractall(task)
    return task


def start_moto(work: Path) -> tuple[subprocess.Popen, str]:
    """moto's S3 on 127.0.0.1 (a free port), holding the snapshot as it would sit in S3."""
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(work / "moto.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit(f"moto_server did not start:\n{(work / 'moto.log').read_text()}") from None
            time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def upload_snapshot(snapshot: Path, endpoint: str, credentials: dict[str, str]) -> str:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials)
    s3.create_bucket(Bucket="features")
    s3.put_object(Bucket="features", Key="featureplane/serving.json", Body=snapshot.read_bytes())
    return "s3://features/featureplane/serving.json"


def run_once(code: str, env: dict[str, str]) -> tuple[float, float]:
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"a benchmark process failed:\n{result.stderr}")
    wall, cpu = result.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30, help="fresh processes per arm (default 30)")
    parser.add_argument(
        "--no-readme", action="store_true", help="do not write the table into benchmarks/README.md"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="featureplane-cold-start-"))
    moto = None
    try:
        snapshot = export_example_snapshot(work)
        task = unpack_package(work)
        credentials = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
        moto, s3_endpoint = start_moto(work)
        s3_uri = upload_snapshot(snapshot, s3_endpoint, credentials)
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FEATUREPLANE_", "AWS_", "PYTHONPROFILE"))
        }
        base.update({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "us-east-1"})
        lambda_env = {
            **base,
            "PYTHONPATH": str(task),
            "AWS_LAMBDA_FUNCTION_NAME": "featureplane-lookup",
            "FEATUREPLANE_DYNAMODB_TABLE_PREFIX": "featureplane_",
        }
        arms = {
            ARMS[0]: (BARE, base),
            ARMS[1]: (FEATUREPLANE, {**lambda_env, "FEATUREPLANE_REGISTRY_SNAPSHOT": str(snapshot)}),
            ARMS[2]: (
                FEATUREPLANE,
                {**lambda_env, "FEATUREPLANE_REGISTRY_SNAPSHOT": s3_uri, "AWS_ENDPOINT_URL_S3": s3_endpoint},
            ),
        }
        for code, env in arms.values():  # warm the file system cache
            run_once(code, env)
        times: dict[str, list[tuple[float, float]]] = {arm: [] for arm in arms}
        for i in range(args.runs):
            order = list(arms)[i % len(arms) :] + list(arms)[: i % len(arms)]  # rotate who goes first
            for arm in order:
                times[arm].append(run_once(*arms[arm]))
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    table, verdicts = results_table(times)
    machine = (
        f"{args.runs} fresh processes per arm, interleaved; Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, {platform.machine()}, load average {os.getloadavg()[0]:.1f} at the end; "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )
    print(table)
    print(machine)
    print(verdicts)
    if not args.no_readme:
        write_readme(f"{table}\n\n{machine}\n\n{verdicts}")


def results_table(times: dict[str, list[tuple[float, float]]]) -> tuple[str, str]:
    """Median/p90 of wall-clock and CPU time per arm, and each featureplane arm's difference to bare."""
    stats = {}
    for arm, samples in times.items():
        wall, cpu = [s[0] for s in samples], [s[1] for s in samples]
        stats[arm] = (
            statistics.median(wall),
            percentile(wall, 0.9),
            statistics.median(cpu),
            percentile(cpu, 0.9),
        )
    bare = stats[ARMS[0]]
    rows = [
        "| arm | wall median (ms) | wall p90 (ms) | CPU median (ms) | CPU p90 (ms) | wall median vs bare |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for arm, (wall, wall90, cpu, cpu90) in stats.items():
        if arm == ARMS[0]:
            rows.append(f"| {arm} | {wall:.1f} | {wall90:.1f} | {cpu:.1f} | {cpu90:.1f} | 1.00x |")
            continue
        rows.append(
            f"| {arm} | {wall:.1f} ({wall - bare[0]:+.1f}) | {wall90:.1f} ({wall90 - bare[1]:+.1f}) | "
            f"{cpu:.1f} ({cpu - bare[2]:+.1f}) | {cpu90:.1f} ({cpu90 - bare[3]:+.1f}) | {wall / bare[0]:.2f}x |"
        )
        extra_wall, extra_cpu = wall - bare[0], cpu - bare[2]
        status = "within" if extra_cpu <= BUDGET_MS else "OVER"
        verdicts.append(
            f"- {arm}: {extra_cpu:+.1f} ms CPU, {extra_wall:+.1f} ms wall-clock (medians) over the bare "
            f"handler: **{status}** the {BUDGET_MS:.0f} ms budget by CPU time; the wall-clock ratio is "
            f"{wall / bare[0]:.2f}x."
        )
    return "\n".join(rows), "\n".join(verdicts)


def write_readme(results: str) -> None:
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    block = f"{START}\n{results}\n{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)


if __name__ == "__main__":
    main()
