"""Reading many keys at once from the SQLite online store answers what reading them pair by pair does,
in every form the lookup API reads."""

from __future__ import annotations

import pytest

from featureplane.online_stores import sqlite as sqlite_store
from featureplane.online_stores.base import OnlineRow, OnlineStore, encode_key, encode_keys, encode_values
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
    assert [store.read_entities(tables, [key]) for key in keys] == [
        expected[i : i + len(tables)] for i in range(0, len(expected), len(tables))
    ]
    monkeypatch.setattr(sqlite_store, "MAX_READ_PARAMS", 2 * len(tables) + 2)  # two keys per statement
    assert store.read_entities(tables, keys) == expected
    monkeypatch.setattr(sqlite_store, "MAX_JOINED_TABLES", 2)  # more tables than one statement joins
    assert store.read_entities(tables, keys) == expected
    assert store.read_entities(tables, []) == []
    store.close()


def expected_encoded(values: list, width: int, cutoffs: list) -> list[tuple]:
    """``read_encoded``'s answer derived from ``read_entities``'s (entity-major OnlineValues)."""
    return [
        tuple(
            None if v is None or (c is not None and v.event_ts <= c) else encode_values(v.values)
            for v, c in zip(values[first : first + width], cutoffs, strict=True)
        )
        for first in range(0, len(values), width)
    ]


def test_read_encoded_answers_what_read_answers_in_storage_form_with_ttl_cutoffs(tmp_path, monkeypatch):
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
    values = store.read_entities(tables, keys)
    for cutoffs in ([None, None, None], [1_003, None, 999], [2_000, 2_000, 2_000]):
        expected = expected_encoded(values, len(tables), cutoffs)
        assert store.read_encoded(tables, keys, cutoffs) == expected
        assert [store.read_encoded(tables, [key], cutoffs)[0] for key in keys] == expected  # one key each
        assert OnlineStore.read_encoded(store, tables, keys, cutoffs) == expected  # the interface's default
    expected = expected_encoded(values, len(tables), [1_003, None, 999])
    assert any(b is None for row in expected for b in row) and any(
        b is not None for row in expected for b in row
    )
    assert store.read_encoded(tables, keys) == expected_encoded(values, len(tables), [None] * 3)
    monkeypatch.setattr(sqlite_store, "MAX_READ_PARAMS", 2 * len(tables) + 2)  # two keys per statement
    assert store.read_encoded(tables, keys, [1_003, None, 999]) == expected
    monkeypatch.setattr(sqlite_store, "MAX_JOINED_TABLES", 2)  # more tables than one statement joins
    assert store.read_encoded(tables, keys, [1_003, None, 999]) == expected
    assert store.read_encoded(tables, []) == []
    store.close()
