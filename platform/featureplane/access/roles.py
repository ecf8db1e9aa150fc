"""Roles and the permissions they grant.

A permission names one kind of action; a role is a named set of permissions held on one workspace.
The lookup API checks ``read_features`` (get-features, get-features-batch, metadata) and ``ingest``.
Roles for CLI actions (owner, editor, operator, viewer, ...) are added here as new entries with their
own permissions (apply, materialize, ...); stored role bindings need no change for that.
"""

from __future__ import annotations


class Permission:
    """Permission names (plain strings: they are looked up on every request)."""

    READ_FEATURES = "read_features"
    INGEST = "ingest"
    ALL = frozenset({READ_FEATURES, INGEST})


ROLES: dict[str, frozenset[str]] = {
    "consumer": frozenset({Permission.READ_FEATURES}),
    "ingest": frozenset({Permission.INGEST}),
    "admin": Permission.ALL,
}

# The roles an API key can be created with.
API_KEY_ROLES = ("consumer", "ingest", "admin")


def check_role(role: str, allowed: tuple[str, ...] = API_KEY_ROLES) -> str:
    if role not in allowed:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(allowed)}")
    return role


def permissions_of(role: str) -> frozenset[str]:
    return ROLES.get(role, frozenset())
