"""Problems found in a feature repository, each naming the object and where it is written."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    kind: str
    name: str
    location: str
    message: str

    def __str__(self) -> str:
        where = _short(self.location)
        subject = f"{self.kind} {self.name!r}" if self.name else self.kind
        parts = [p for p in (where, subject) if p]
        return ": ".join([*parts, self.message])


def _short(location: str) -> str:
    if not location:
        return ""
    try:
        rel = os.path.relpath(location)
    except ValueError:
        return location
    return rel if not rel.startswith("..") else location


class RepositoryError(Exception):
    """The repository cannot be loaded or is invalid; ``problems`` lists every issue found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        count = len(problems)
        lines = [f"{count} problem{'s' if count != 1 else ''} in the feature repository:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))
