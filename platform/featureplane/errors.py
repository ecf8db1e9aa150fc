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
