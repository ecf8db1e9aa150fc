"""Build an AWS Lambda package: a slim zip with only what the function's handler imports.

    python deploy/lambda/build.py [--function lookup|stream] [--out build/lambda/featureplane-<function>.zip]
                                  [--arch x86_64|arm64]

``lookup`` (the default) is the lookup API (``featureplane.serving.aws_lambda.handler``); ``stream`` the
stream processor for Kinesis event-source mappings (``featureplane.streams.aws_lambda.handler``).

The zip holds the featureplane modules that the handler imports (found by importing the handler's entry
modules in a child process, which also fails the build if anything heavy such as pandas or DuckDB is
pulled in), plus orjson and PyYAML built for the Lambda platform (manylinux wheels at the versions
pinned in constraints.txt). boto3 is not bundled: the Lambda Python runtime provides it. Modules are
precompiled (unchecked-hash .pyc), since /var/task is read-only and Lambda cannot cache bytecode itself.
Entries have fixed timestamps, so the same sources give the same zip.
"""

from __future__ import annotations

import argparse
import compileall
import json
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "platform" / "featureplane"
ENTRY_MODULES = [
    "featureplane.serving.aws_lambda",
    "featureplane.serving.app",
    "featureplane.registry.snapshot",
    "featureplane.online_stores.dynamodb",
    "featureplane.util.aws",
    # imported lazily by create_lookup_service
    "featureplane.ingest.service",
    "featureplane.ingest.log",
    "featureplane.access.verifier",
    "featureplane.serving.monitor",
    "featureplane.compute.aggregation.tiles",  # empty-window values of aggregate features
    "featureplane.serving.realtime",
    "featureplane.definitions.transformation",  # realtime views' context, when the snapshot has one
]
STREAM_ENTRY_MODULES = [
    "featureplane.streams.aws_lambda",
    "featureplane.registry.snapshot",
    "featureplane.online_stores.dynamodb",
    "featureplane.streams.dynamodb",
    "featureplane.util.aws",
    "featureplane.definitions.transformation",  # the views' stored transformations
]
FUNCTIONS = {"lookup": ENTRY_MODULES, "stream": STREAM_ENTRY_MODULES}
BUNDLED = ["orjson", "PyYAML"]  # distribution names, pinned in constraints.txt
HEAVY = ["pandas", "pyarrow", "numpy", "duckdb", "dagster", "dbt", "great_expectations", "snowflake",
         "deltalake", "sqlglot", "typer", "rich"]  # fmt: skip
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
FIXED_TIME = (2020, 1, 1, 0, 0, 0)

PROBE = """
import json, sys
for name in {entries!r}:
    __import__(name)
heavy = sorted(m for m in sys.modules for h in {heavy!r} if m == h or m.startswith(h + '.'))
files = sorted(m.__file__ for n, m in list(sys.modules.items())
               if (n == 'featureplane' or n.startswith('featureplane.')) and getattr(m, '__file__', None))
print(json.dumps({{"heavy": heavy, "files": files}}))
"""


def lookup_modules(python: str, entries: list[str] = ENTRY_MODULES) -> list[Path]:
    """The featureplane source files that the handler's entry modules import."""
    code = PROBE.format(entries=entries, heavy=HEAVY)
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"importing the handler failed:\n{result.stderr}")
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    if probe["heavy"]:
        raise SystemExit(f"the handler imports heavy modules: {', '.join(probe['heavy'])}")
    files = [Path(f).resolve() for f in probe["files"]]
    outside = [f for f in files if PACKAGE.resolve() not in f.parents]
    if outside:
        raise SystemExit(f"featureplane is not imported from {PACKAGE}: {outside[0]}")
    return files


def pinned(names: list[str]) -> list[str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    missing = [n for n in names if n.lower() not in pins]
    if missing:
        raise SystemExit(f"constraints.txt pins no version of {', '.join(missing)}")
    return [f"{n}=={pins[n.lower()]}" for n in names]


def install_dependencies(target: Path, arch: str, python_version: str) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
        "--only-binary=:all:", "--implementation", "cp", "--python-version", python_version,
        "--platform", PLATFORMS[arch], "--target", str(target), *pinned(BUNDLED),
    ]  # fmt: skip
    subprocess.run(command, check=True)


def build(out: Path, arch: str = "x86_64", python_version: str = "3.11", function: str = "lookup") -> Path:
    stage = Path(tempfile.mkdtemp(prefix="featureplane-lambda-"))
    try:
        for source in lookup_modules(sys.executable, FUNCTIONS[function]):
            target = stage / "featureplane" / source.relative_to(PACKAGE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        install_dependencies(stage, arch, python_version)
        for junk in stage.glob("*.dist-info/RECORD"):
            junk.unlink()
        shutil.rmtree(stage / "bin", ignore_errors=True)
        if f"{sys.version_info.major}.{sys.version_info.minor}" == python_version:
            compileall.compile_dir(
                stage, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
            )
        else:
            print(
                f"note: not precompiling (building with Python {sys.version.split()[0]}, not {python_version})"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for path in sorted(p for p in stage.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(path.relative_to(stage).as_posix(), FIXED_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--function", choices=sorted(FUNCTIONS), default="lookup")
    parser.add_argument("--out", type=Path, help="default: build/lambda/featureplane-<function>.zip")
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default="x86_64")
    parser.add_argument("--python-version", default="3.11")
    args = parser.parse_args()
    out = args.out or ROOT / "build" / "lambda" / f"featureplane-{args.function}.zip"
    out = build(out.resolve(), args.arch, args.python_version, args.function)
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
    ours = sum(1 for n in names if n.startswith("featureplane/") and n.endswith(".py"))
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB, {ours} featureplane modules, {len(names)} files)")


if __name__ == "__main__":
    main()
