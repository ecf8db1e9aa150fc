"""Shared benchmark plumbing: measured subprocesses, work directories, Feast's own virtualenv, tables."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"
BIN = Path(sys.executable).parent
FEAST_VERSION = "0.67.0"


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str = ""
    stderr: str = ""
    extra: dict = field(default_factory=dict)


def _peak_rss_mb(pid: int) -> float | None:
    """The process's high-water mark of resident memory (VmHWM), in MB; None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_measured(
    args: list[str], *, env: dict | None = None, cwd: Path | None = None, check: bool = True
) -> Measured:
    """Run a command; its wall time and its peak resident memory.

    The peak is the process's own high-water mark (VmHWM), sampled until it exits: unlike wait4's
    ru_maxrss it does not count what the child inherited from this process before exec."""
    started = time.perf_counter()
    process = subprocess.Popen(
        args, cwd=cwd or ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    output: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda name=name, stream=stream: output.__setitem__(name, stream.read()))
        for name, stream in (("stdout", process.stdout), ("stderr", process.stderr))
    ]
    for reader in readers:
        reader.start()
    peak = 0.0
    while process.poll() is None:
        sample = _peak_rss_mb(process.pid)
        if sample is not None:
            peak = max(peak, sample)
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    for reader in readers:
        reader.join()
    result = Measured(seconds, peak, process.returncode, output["stdout"], output["stderr"])
    if check and process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, args))} failed ({process.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def feast_python() -> Path:
    """Feast installed into its own virtualenv under benchmarks/.work (never the project's)."""
    venv = WORK / f"feast-{FEAST_VERSION}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
        print(f"installing feast=={FEAST_VERSION} into {venv} (once)...", file=sys.stderr, flush=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"feast=={FEAST_VERSION}"], check=True
        )
        stamp.touch()
    return python


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save_results(name: str, results: dict) -> Path:
    path = ROOT / "benchmarks" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path
