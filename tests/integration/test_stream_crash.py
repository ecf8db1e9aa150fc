"""`featureplane stream run` killed with SIGKILL again and again while records keep arriving through
the ingest API: after a final run, every record is counted exactly once in the stream view's tiles."""

from __future__ import annotations

import json
import random
import select
import signal
import subprocess
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest
from conftest import BIN
from stream_repo import payment, stream_repo

from featureplane.serving.app import create_lookup_service
from featureplane.serving.protocol import Request
from featureplane.streams.runner import open_stream

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 9, 0)
VIEW = "payment_counts"


def push(service, records: list[dict]) -> None:
    body = json.dumps({"workspaceName": "prod", "records": {"payments": records}}).encode()
    response = service.handle(Request("POST", "/api/v1/ingest", {}, body))
    assert response.status == 200, response.json()


def start(repo, batch_size: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(BIN / "featureplane"),
            "stream",
            "run",
            "-w",
            "prod",
            "--view",
            VIEW,
            "--batch-size",
            str(batch_size),
        ],
        cwd=repo.root,
        env=repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_repeated_kill_9_loses_nothing_and_counts_nothing_twice(tmp_path):
    rng = random.Random(19)
    repo = stream_repo(tmp_path / "repo")
    service = create_lookup_service(repo.config())
    expected_n: Counter = Counter()
    expected_sum: Counter = Counter()
    sent = 0

    def push_some(requests: int) -> None:
        nonlocal sent
        for _ in range(requests):
            records = []
            for _ in range(rng.randint(1, 40)):
                user = f"u{rng.randint(0, 9)}"
                ts = T0 + timedelta(seconds=rng.randint(0, 3599))
                amount = rng.randint(1, 100)
                merchant = "test" if rng.random() < 0.1 else f"m{rng.randint(0, 3)}"
                records.append(payment(user, ts.isoformat() + "Z", amount, merchant))
                if merchant != "test":
                    tile = (user, (ts - datetime(1970, 1, 1)) // timedelta(minutes=1))
                    expected_n[tile] += 1
                    expected_sum[tile] += amount
            push(service, records)
            sent += len(records)
        service.ingestor.log.close()  # seal: the next requests go to a new segment

    kills = 0
    behind: list[int] = []  # records not yet processed when each run was killed
    push_some(30)
    for _ in range(8):
        push_some(20)  # work waiting for the run
        process = start(repo, batch_size=rng.randint(3, 25))
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "the stream processor printed nothing"
        line = process.stdout.readline()
        assert line.startswith("prod/payment_counts: "), process.stderr.read()  # it is processing
        push_some(rng.randint(5, 15))  # records arrive while it runs
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL
        kills += 1
        with repo.runtime() as runtime:
            processor, source = open_stream(runtime, "prod", VIEW)
            behind.append(len(source.read(processor.state().positions, 10**9)))
    push_some(10)
    final = repo.cli("stream", "run", "-w", "prod", "--view", VIEW, "--once")
    assert "0 late, 0 invalid" in final.stdout

    with repo.runtime() as runtime:
        processor, source = open_stream(runtime, "prod", VIEW)
        got_n: Counter = Counter()
        got_sum: Counter = Counter()
        per_user = defaultdict(dict)
        for user in {u for u, _ in expected_n}:
            per_user[user] = processor.store.tiles(processor.table_id, (user,))
            for index, tile in per_user[user].items():
                got_n[(user, index)] = tile["cols"]["amount"]["n"]
                got_sum[(user, index)] = tile["cols"]["amount"]["sum"]
        assert kills == 8 and sum(expected_n.values()) > 1000
        print("behind at each kill:", behind)
        assert sum(1 for b in behind if b) >= 4, behind  # most runs died with work in hand
        assert got_n == expected_n
        assert got_sum == expected_sum
        segments = source.log.segments("prod")
        assert len(segments) > 8
        assert set(processor.state().positions) == {s.name for s in segments}
    service.snapshots.close()
