"""Reading many keys at once from the SQLite online store answers what reading them pair by pair does,
in every form the lookup API reads."""

from __future__ import annotations

import orjson
import pytest

from featureplane.online_stores import sqlite as sqlite_store
from featureplane.online_stores.base import OnlineRow, OnlineStore, encode_key, encode_keys
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


def decoded(rows: list[tuple]) -> list:
    """``read_encoded`` rows as ``read_entities`` answers them (entity-major OnlineValues)."""
    values = []
    for row in rows:
        for stamp, blob in zip(row[::2], row[1::2], strict=True):
            values.append(None if stamp is None else (stamp, orjson.loads(blob)))
    return values


def test_read_encoded_answers_what_read_answers_in_storage_form(tmp_path, monkeypatch):
    store = SQLiteOnlineStore(tmp_path / "online.db")
    tables = ["ws/a/g1", "ws/b/g1", "ws/c/g1"]
    for t, table in enumerate(tables):
        rows = [
            OnlineRow((k,), 1_000 + i, [i, table, None, 0.1 + 0.2])
            for i, k in enumerate(AWKWARD)
            if (i + t) % 3
        ]
        store.write(table, rows)
    keys = [(k,) for k in [*AWKWARD, "missing", "u1"]]
    expected = [None if v is None else tuple(v) for v in store.read_entities(tables, keys)]
    encoded = store.read_encoded(tables, keys)
    assert len(encoded) == len(keys) and all(len(row) == 2 * len(tables) for row in encoded)
    assert all(type(blob) is bytes for row in encoded for blob in row[1::2] if blob is not None)
    assert decoded(encoded) == expected
    assert decoded(store.read_encoded(tables, keys[:1])) == expected[:3]  # the one-key statement
    assert decoded(OnlineStore.read_encoded(store, tables, keys)) == expected  # the interface's default
    monkeypatch.setattr(sqlite_store, "MAX_READ_PARAMS", len(tables) + 2)  # two keys per statement
    assert store.read_encoded(tables, keys) == encoded
    monkeypatch.setattr(sqlite_store, "MAX_JOINED_TABLES", 2)  # more tables than one statement joins
    assert decoded(store.read_encoded(tables, keys)) == expected
    assert store.read_encoded(tables, []) == []
    store.close()
