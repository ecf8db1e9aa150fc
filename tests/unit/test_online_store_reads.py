"""Reading many keys at once from the SQLite online store answers what reading them pair by pair does."""

from __future__ import annotations

import pytest

from featureplane.online_stores import sqlite as sqlite_store
from featureplane.online_stores.base import OnlineRow, encode_key, encode_keys
from featureplane.online_stores.sqlite import SQLiteOnlineStore

AWKWARD = ["u1", "", "ü-ñ 東京", 'say "hi"', "back\\slash", "tab\there", "line\nbreak", "\x7f", "\u2028"]


@pytest.mark.parametrize(
    "keys",
    [
        [(k,) for k in AWKWARD],
        [("plain",), ("also plain",)],
        [(1,), (2,)],
        [("a", 1), ("b", 2)],
        [("a",), (3,)],
        [],
    ],
)
def test_keys_are_encoded_as_one_by_one(keys):
    assert encode_keys(keys) == [encode_key(k) for k in keys]


def test_read_entities_answers_what_read_answers(tmp_path, monkeypatch):
    store = SQLiteOnlineStore(tmp_path / "online.db")
    tables = ["ws/a/g1", "ws/b/g1", "ws/c/g1"]
    for t, table in enumerate(tables):
        rows = [OnlineRow((k,), 1_000 + i, [i, table, None]) for i, k in enumerate(AWKWARD) if (i + t) % 3]
        store.write(table, rows)
    keys = [(k,) for k in [*AWKWARD, "missing", "u1"]]
    expected = store.read([(table, key) for key in keys for table in tables])
    assert any(v is None for v in expected) and any(v is not None for v in expected)
    assert store.read_entities(tables, keys) == expected
    monkeypatch.setattr(sqlite_store, "MAX_READ_PARAMS", len(tables) + 2)  # two keys per statement
    assert store.read_entities(tables, keys) == expected
    assert store.read_entities(tables, []) == []
    store.close()
