"""engine.memory_limit, engine.threads and engine.temp_directory reach every DuckDB connection
featureplane opens: the engine's warehouse connection and the Delta offline store's own."""

from __future__ import annotations

from helpers import AMOUNTS_SERVICE, events_repo

from featureplane.offline_stores.delta import _duck


def settings(con) -> tuple:
    return con.execute(
        "SELECT current_setting('memory_limit'), current_setting('threads'), current_setting('temp_directory')"
    ).fetchone()


def test_engine_limits_reach_the_engine_and_the_delta_store(tmp_path):
    repo = events_repo(tmp_path, AMOUNTS_SERVICE)
    repo.set_config("engine", memory_limit="300MB", threads=1)
    with repo.runtime() as runtime:
        spill = repo.config().resolve(repo.config().data_dir / "tmp" / "duckdb")
        engine = settings(runtime.engine.con)
        store = settings(_duck(runtime.offline_store.duckdb_settings))
        for memory, threads, temp in (engine, store):
            assert memory.startswith("286") and threads == 1 and temp == str(spill)  # 300 MB in MiB
        assert spill.is_dir()
    repo.set_config("engine", memory_limit=None, threads=None)
    with repo.runtime() as runtime:
        assert runtime.offline_store.duckdb_settings == {}
