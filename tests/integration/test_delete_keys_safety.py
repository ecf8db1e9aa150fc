"""A delete-keys killed with SIGKILL leaves no key half-deleted in either store and a rerun (or the
view's next materialization) finishes it; a million keys stream through in bounded memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from materialization_scenarios import (
    D1,
    DAY,
    Backend,
    assert_online_equals_offline,
    duckdb_backend,
    offline_rows,
)

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


@pytest.fixture
def backend(tmp_path) -> Backend:
    built = duckdb_backend(tmp_path)
    built.materialize(D1, D1 + 3 * DAY)
    built.runtime.close()
    yield built
    built.runtime.close()


def run(backend: Backend, keys: Path, point: str, chunk: int = 2) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(HERE / "delete_runner.py"),
        str(backend.repo.config_path),
        "prod",
        "amounts",
    ]
    return subprocess.run(
        [*command, str(keys), str(chunk), point], capture_output=True, text=True, timeout=600
    )


def users(backend: Backend) -> list[str]:
    return sorted({row[0] for row in offline_rows(backend.runtime, backend.state)})


def online(backend: Backend) -> dict[str, bool]:
    found = backend.read_online("u1", "u2", "u3")
    return {u: v is not None for u, v in zip(("u1", "u2", "u3"), found, strict=True)}


@pytest.fixture
def keys(tmp_path) -> Path:
    path = tmp_path / "keys.csv"
    path.write_text("user_id\nu1\nu2\nu3\n")
    return path


def test_killed_between_the_stores_then_rerun(backend, keys):
    killed = run(backend, keys, "between_stores")
    assert killed.returncode == -9, killed.stderr
    # The first chunk (u1 with both its rows, u2) is gone offline in one commit; online still has it.
    assert users(backend) == ["u3"]
    assert online(backend) == {"u1": True, "u2": True, "u3": True}
    rerun = run(backend, keys, "none")
    assert rerun.returncode == 0, rerun.stderr
    assert users(backend) == [] and online(backend) == {"u1": False, "u2": False, "u3": False}


def test_killed_between_the_stores_then_the_next_materialization_removes_the_keys_online(backend, keys):
    killed = run(backend, keys, "between_stores")
    assert killed.returncode == -9, killed.stderr
    result = backend.materialize(D1 + 3 * DAY, D1 + 4 * DAY)
    assert result.online_full_sync is True  # the delete's offline version is not the online marker
    assert online(backend) == {"u1": False, "u2": False, "u3": True}
    assert_online_equals_offline(backend.runtime, backend.state)


def test_killed_between_chunks_then_rerun(backend, keys):
    killed = run(backend, keys, "second_chunk")
    assert killed.returncode == -9, killed.stderr
    assert users(backend) == ["u3"]
    assert online(backend) == {"u1": False, "u2": False, "u3": True}
    assert_online_equals_offline(backend.runtime, backend.state)
    rerun = run(backend, keys, "none")
    assert rerun.returncode == 0, rerun.stderr
    assert users(backend) == [] and online(backend) == {"u1": False, "u2": False, "u3": False}


def test_a_million_keys_stream_through_in_bounded_memory(backend, tmp_path):
    path = tmp_path / "million.csv"
    with path.open("w") as out:
        out.write("user_id\nu1\n")
        for n in range(1_000_000):
            out.write(f"gone-{n}\n")
    done = run(backend, path, "memory", chunk=100_000)
    assert done.returncode == 0, done.stderr
    fields = dict(part.split("=") for part in done.stdout.split())
    assert fields["keys"] == "1000001" and fields["rows"] == "2"
    assert users(backend) == ["u2", "u3"]
    # Chunks of 100,000 keys: holding the million key tuples alone would add about 140 MiB.
    assert int(fields["added_kib"]) < 100 * 1024, fields
