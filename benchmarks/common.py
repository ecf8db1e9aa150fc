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


def _status_kb(pid: int, fields: tuple[str, ...]) -> dict[str, int]:
    """Fields of /proc/<pid>/status in kB; empty once the process has exited."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name = line.split(":", 1)[0]
                if name in fields:
                    found[name] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return {}
    return found


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                found += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return found


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (from /proc/<pid>/task/*/children)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


@dataclass
class MemorySampler:
    """Peak memory of a process tree, sampled: the largest sum of resident memory (VmRSS) over the
    process and its descendants at one sample, and the largest high-water mark (VmHWM) of any single
    process of the tree. VmHWM counts a process's own peak even between samples; the tree sum catches
    processes (Dagster step workers, engine subprocesses) that run alongside the one launched."""

    tree_peak_kb: int = 0
    process_peak_kb: int = 0
    processes: set = field(default_factory=set)

    def sample(self, pid: int) -> None:
        total = 0
        for member in process_tree(pid):
            values = _status_kb(member, ("VmRSS", "VmHWM"))
            if not values:
                continue
            self.processes.add(member)
            total += values.get("VmRSS", 0)
            self.process_peak_kb = max(self.process_peak_kb, values.get("VmHWM", 0))
        self.tree_peak_kb = max(self.tree_peak_kb, total)

    @property
    def peak_mb(self) -> float:
        """What the tables report: the larger of the two peaks."""
        return max(self.tree_peak_kb, self.process_peak_kb) / 1024


def run_measured(
    args: list[str], *, env: dict | None = None, cwd: Path | None = None, check: bool = True
) -> Measured:
    """Run a command; its wall time and its peak resident memory (see ``MemorySampler``).

    High-water marks are the processes' own (VmHWM): unlike wait4's ru_maxrss they do not count what a
    child inherited from this process before exec."""
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
    memory = MemorySampler()
    while process.poll() is None:
        memory.sample(process.pid)
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    for reader in readers:
        reader.join()
    result = Measured(
        seconds,
        memory.peak_mb,
        process.returncode,
        output["stdout"],
        output["stderr"],
        extra={
            "tree_rss_peak_mb": memory.tree_peak_kb / 1024,
            "max_process_hwm_mb": memory.process_peak_kb / 1024,
            "processes": len(memory.processes),
        },
    )
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
