"""Password hashes: argon2id (argon2-cffi), in the PHC string format that carries its own parameters.

argon2 is imported on first use: the lookup service imports ``featureplane.access`` and never hashes a
password.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 takes any length; a bound keeps one request from costing a lot of hashing


@lru_cache(maxsize=1)
def _hasher() -> Any:
    from argon2 import PasswordHasher, Type

    return PasswordHasher(type=Type.ID)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash to verify against when there is no user, so both cases cost the same."""
    return _hasher().hash("no such user: this hash only spends the time a real one would")


def check_password(password: str) -> str:
    """The password if it is acceptable; ValueError saying why not (never echoing it)."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise ValueError(f"a password has at most {MAX_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    return _hasher().hash(check_password(password))


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (None: no password set; the check still costs a hash)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    if not isinstance(password, str) or len(password) > MAX_LENGTH:
        return False
    try:
        return bool(_hasher().verify(stored or _dummy_hash(), password)) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether a hash was made with weaker parameters than today's (rehash it at the next login)."""
    return bool(_hasher().check_needs_rehash(stored))
