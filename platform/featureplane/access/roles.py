"""Roles and the permissions they grant.

A permission names one kind of action; a role is a named set of permissions held on one workspace (or
on ``*``: every workspace). The lookup API checks ``read_features`` (get-features, get-features-batch,
metadata) and ``ingest``. With ``auth: {enabled: true}`` in featureplane.yaml the CLI and the Dagster
assets check the others: ``view`` (plan, status), ``apply``, ``materialize``, ``suppress_recreates``,
``delete_workspace`` and ``manage_access`` (roles and API keys).

    viewer    view
    consumer  view, read_features
    operator  view, read_features, materialize
    editor    view, read_features, materialize, apply, ingest
    owner     everything
    ingest    ingest                 (API keys only)
    admin     read_features, ingest  (API keys only: the lookup API's full access)
"""

from __future__ import annotations


class Permission:
    """Permission names (plain strings: they are looked up on every request)."""

    READ_FEATURES = "read_features"
    INGEST = "ingest"
    ALL = frozenset({READ_FEATURES, INGEST})
    VIEW = "view"
    MATERIALIZE = "materialize"
    APPLY = "apply"
    SUPPRESS_RECREATES = "suppress_recreates"
    DELETE_WORKSPACE = "delete_workspace"
    MANAGE_ACCESS = "manage_access"


_VIEWER = frozenset({Permission.VIEW})
_CONSUMER = _VIEWER | {Permission.READ_FEATURES}
_OPERATOR = _CONSUMER | {Permission.MATERIALIZE}
_EDITOR = _OPERATOR | {Permission.APPLY, Permission.INGEST}
_OWNER = _EDITOR | {Permission.SUPPRESS_RECREATES, Permission.DELETE_WORKSPACE, Permission.MANAGE_ACCESS}

ROLES: dict[str, frozenset[str]] = {
    "viewer": _VIEWER,
    "consumer": _CONSUMER,
    "operator": _OPERATOR,
    "editor": _EDITOR,
    "owner": _OWNER,
    "ingest": frozenset({Permission.INGEST}),
    "admin": Permission.ALL,
}

# The roles an API key can be created with (what the lookup API needs), and those a principal can be
# given with `featureplane access assign-role`.
API_KEY_ROLES = ("consumer", "ingest", "admin")
WORKSPACE_ROLES = ("owner", "editor", "operator", "consumer", "viewer", "ingest", "admin")
ALL_WORKSPACES = "*"


def check_role(role: str, allowed: tuple[str, ...] = API_KEY_ROLES) -> str:
    if role not in allowed:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(allowed)}")
    return role


def permissions_of(role: str) -> frozenset[str]:
    return ROLES.get(role, frozenset())
