"""featureplane.yaml is checked once, the same way by every command: unknown keys at any depth (with the
file, the key path and a "did you mean"), wrong types and ranges, unsupported backends; ${VAR}
interpolation; secrets never shown; environment problems as one line; and docs/configuration.md
naming every key the schema has."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, Repo, write_config
from helpers import AMOUNTS_SERVICE, events_repo

from featureplane.config import ConfigError, load_config


def load(tmp_path: Path, text: str):
    path = tmp_path / "featureplane.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "serving: {max_batch_rowz: 5}",
            "serving.max_batch_rowz: unknown key (did you mean 'max_batch_rows'?)",
        ),
        (
            "online_store: {type: sqlite, pathh: x.db}",
            "online_store.pathh: unknown key (did you mean 'path'?)",
        ),
        (
            "monitoring: {quality: {enabeld: false}}",
            "monitoring.quality.enabeld: unknown key (did you mean 'enabled'?)",
        ),
        (
            "engine: {type: duckdb, memorylimit: 1GB}",
            "engine.memorylimit: unknown key (did you mean 'memory_limit'?)",
        ),
        ("onlinestore: {}", "onlinestore: unknown key (did you mean 'online_store'?)"),
        (
            "online_store: {type: dynamodb, regoin: eu-west-1}",
            "online_store.regoin: unknown key (did you mean 'region'?)",
        ),
        (
            "monitoring: {alerts: [{type: slack, webhok_url: x}]}",
            "monitoring.alerts[0].webhok_url: unknown key",
        ),
    ],
)
def test_unknown_keys_are_refused_at_any_depth_with_the_file_and_a_suggestion(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert f"{tmp_path / 'featureplane.yaml'}: {message}" in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "serving: {registry_refresh_seconds: abc}",
            "serving.registry_refresh_seconds must be a number, got 'abc'",
        ),
        ("serving: {max_batch_rows: 0}", "serving.max_batch_rows must be at least 1, got 0"),
        ("serving: {auth: maybe}", "serving.auth must be true or false, got 'maybe'"),
        (
            "monitoring: {serving_log: {sample_rate: 2}}",
            "monitoring.serving_log.sample_rate must be between 0 and 1",
        ),
        ("engine: {type: oracle}", "engine.type: 'oracle' is not supported (choose duckdb or snowflake)"),
        (
            "online_store: {type: redis}",
            "online_store.type: 'redis' is not supported (choose sqlite or dynamodb)",
        ),
        ("registry: {type: postgres}", "registry.dsn is required"),
        ("offline_store: {type: snowflake, point_in_time_join: merge}", "must be one of 'asof', 'window'"),
        ("engine: [1, 2]", "engine must be a mapping"),
        ("dbt: {target: dev}", "dbt.project_dir is required"),
        ("project: [a]", "project must be a non-empty string"),
    ],
)
def test_wrong_values_name_the_key_and_what_is_expected(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(tmp_path, text)


def test_every_problem_is_listed_each_on_its_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(
            tmp_path, "serving: {max_batch_rowz: 5, registry_refresh_seconds: abc}\nengine: {type: oracle}\n"
        )
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(str(tmp_path)) for line in lines)


def test_values_from_the_environment_are_typed_and_a_missing_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("FP_REFRESH", "2.5")
    monkeypatch.setenv("FP_AUTH", "off")
    config = load(
        tmp_path,
        "serving: {registry_refresh_seconds: '${FP_REFRESH}', auth: '${FP_AUTH}', "
        "max_batch_rows: '${FP_ROWS:-7}'}\n",
    )
    assert (config.serving.registry_refresh_seconds, config.serving.auth, config.serving.max_batch_rows) == (
        2.5,
        False,
        7,
    )
    with pytest.raises(ConfigError, match="environment variable FP_NOT_SET is not set"):
        load(tmp_path, "engine: {type: snowflake, account: a, user: u, password: '${FP_NOT_SET}'}\n")


def test_paths_resolve_against_the_file_and_defaults_live_in_the_data_directory(tmp_path):
    config = load(tmp_path, "data_dir: state\nonline_store: {type: sqlite, path: ../elsewhere/online.db}\n")
    assert config.online_path == (tmp_path.parent / "elsewhere" / "online.db").resolve()
    assert config.registry_path == tmp_path / "state" / "registry.db"
    assert "path" in config.online_store and "path" not in config.registry  # what the file set


def test_secrets_are_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("FP_SECRET", "hunter2-very-secret")
    config = load(tmp_path, "engine: {type: snowflake, account: a, user: u, password: '${FP_SECRET}'}\n")
    assert config.engine.password == "hunter2-very-secret"
    assert "hunter2" not in repr(config) and "password='***'" in repr(config.engine)


def test_plan_and_serve_refuse_the_same_bad_file_in_one_line(tmp_path):
    """The CLI's commands share one validation: what serve refuses, plan refuses too."""
    repo = Repo(tmp_path, write_config(tmp_path, "monitoring: {serving_log: {sample_rate: 2}}\n"))
    for command in (["plan", "-w", "prod"], ["serve", "--port", "0"], ["workspace", "list"]):
        result = repo.cli(*command, check=False)
        assert result.returncode == 1, command
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines() == [
            f"error: {tmp_path / 'featureplane.yaml'}: monitoring.serving_log.sample_rate must be between 0 "
            "and 1, got 2"
        ], command


def test_a_registry_under_a_regular_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    repo = Repo(tmp_path, write_config(tmp_path))
    text = repo.config_path.read_text().replace(".featureplane/registry.db", "afile/registry.db")
    repo.config_path.write_text(text)
    result = repo.cli("workspace", "create", "dev", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"error: cannot use the registry {tmp_path / 'afile' / 'registry.db'}: File exists at "
        f"{tmp_path / 'afile'} (a file of that name is in the way of a directory)"
    )


@contextlib.contextmanager
def read_only(directory: Path):
    """``directory`` and everything in it read-only, even for root (immutable, where root runs)."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(directory)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(directory)], check=True)
        return
    if shutil.which("chattr") is None:
        pytest.skip("chattr is needed to make a directory read-only for root")
    result = subprocess.run(["chattr", "-R", "+i", str(directory)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"this file system cannot make files immutable: {result.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(directory)], check=True)


def test_plan_apply_and_materialize_on_a_read_only_data_directory_are_one_line(tmp_path):
    repo = events_repo(tmp_path, AMOUNTS_SERVICE)
    repo.cli("workspace", "create", "prod", "--live")
    repo.cli("apply", "--yes")
    with read_only(tmp_path / ".featureplane"):
        for command in (
            ["plan"],
            ["apply", "--yes"],
            ["materialize", "amounts", "--start", "2024-01-01", "--end", "2024-01-02"],
        ):
            result = repo.cli(*command, check=False)
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr, command
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: cannot use "), (command, lines)
            assert str(tmp_path / ".featureplane") in lines[0], command


def test_the_configuration_guide_names_every_key_of_the_schema():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import config_reference
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert config_reference.generated_part(text) == config_reference.reference(), (
        "docs/configuration.md is out of date: run python scripts/config_reference.py --write"
    )
