"""Errors shared by every part of featureplane, whose messages are meant for a person."""

from __future__ import annotations

import errno
import os


class FeatureplaneError(Exception):
    """An error a user can act on: its message says what is wrong and where."""


class StorageError(FeatureplaneError, OSError):
    """A file or directory featureplane keeps data in cannot be used (missing, read-only, not a
    directory, ...)."""


_HINTS = {
    errno.EACCES: "check its permissions, or point data_dir in featureplane.yaml somewhere writable",
    errno.EROFS: "the file system is read-only: point data_dir in featureplane.yaml somewhere writable",
    errno.EEXIST: "a file of that name is in the way of a directory",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.ENOSPC: "the disk is full",
}


def describe_os_error(exc: OSError, what: str = "") -> str:
    """One line for an OSError: what failed, on which path, why, and what to do."""
    path = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    hint = _HINTS.get(exc.errno or 0, "")
    subject = f"{what} {path}".strip() if what or path else "a file"
    return f"cannot use {subject}: {reason}" + (f" ({hint})" if hint else "")


def storage_error(path: object, exc: BaseException, what: str = "the SQLite database") -> StorageError:
    """A StorageError naming ``path`` for an OSError or sqlite3 error raised while opening it."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        where = f" at {exc.filename}" if exc.filename is not None and str(exc.filename) != str(path) else ""
        hint = _HINTS.get(exc.errno or 0, "")
        message = f"cannot use {what} {path}: {reason}{where}" + (f" ({hint})" if hint else "")
    else:
        text = str(exc)
        hint = ""
        if "readonly" in text or "unable to open" in text:
            hint = " (is its directory read-only, or a file in the way? data_dir in featureplane.yaml)"
        message = f"cannot use {what} {path}: {text}{hint}"
    return StorageError(message)


# -- values sent by clients, in error messages and limits ------------------------------------------

MAX_JSON_DEPTH = 64  # levels of objects and lists in a request body
MAX_KEY_BYTES = 1024  # a join key value, in UTF-8 (DynamoDB's sort-key limit)
MAX_RECORD_BYTES = 384 * 1024  # one ingested record as JSON (it must fit a DynamoDB item, 400 KB)

_PREVIEW = 60


def describe_value(value: object, limit: int = _PREVIEW) -> str:
    """A value a client sent, for an error message: short scalars as written (``'high'``, ``7``,
    ``true``), anything else as its JSON type, size and a bounded preview. Never ``repr`` of the whole
    value: a client's value can be megabytes long or nested deep enough to exhaust the stack."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[: limit - 3]!r}... (a string of {len(value)} characters)"
    if isinstance(value, int):
        if value.bit_length() <= 3 * limit:
            return str(value)
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return _sized("an object", len(value), "key")
    if isinstance(value, list | tuple):
        return _sized("a list", len(value), "item")
    return f"a value of type {type(value).__name__}"


def _sized(kind: str, count: int, unit: str) -> str:
    if count == 0:
        return f"{kind} with no {unit}s"
    return f"{kind} of {count} {unit}{'s' if count != 1 else ''}"


def nesting_exceeds(value: object, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Where objects and lists in ``value`` (parsed JSON) first nest more than ``limit`` levels deep
    (a path such as ``params.joinKeyMap.user_id.a``, "" for the top), or None. Without recursion, so any
    depth can be checked; paths are only built once a too-deep value is found."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict:
            children = item.values()  # type: ignore[attr-defined]
        elif kind is list:
            children = item  # type: ignore[assignment]
        else:
            continue
        if depth > limit:
            return _path_to_depth(value, limit)
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return None


def _path_to_depth(value: object, limit: int, shown: int = 4) -> str:
    """The path to the first value past ``limit`` levels, its first ``shown`` steps (then "...")."""
    stack: list[tuple[object, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if depth > limit:
            return path + "..."
        if type(item) is dict:
            steps = [(f".{str(k)[:40]}", v) for k, v in item.items()]  # type: ignore[attr-defined]
        elif type(item) is list:
            steps = [(f"[{i}]", v) for i, v in enumerate(item)]  # type: ignore[arg-type]
        else:
            continue
        for step, child in steps:
            if type(child) in (dict, list):
                stack.append((child, depth + 1, path + step if depth <= shown else path))
    return ""
