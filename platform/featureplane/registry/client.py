"""Talking to a featureplane server: JSON over HTTP(S) with a bearer credential, errors as exceptions.

The credential is ``$FEATUREPLANE_API_KEY`` when set (CI, services), else the session token that
``featureplane login`` stored for the server's URL in the token file (mode 0600). A server's error
``{"detail", "error"}`` becomes the exception the commands already handle (WorkspaceNotFound,
ConflictError, ...) or a ServerError, whose message is one line. Standard library only.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from featureplane.errors import FeatureplaneError
from featureplane.registry.base import (
    ConflictError,
    PlanRefused,
    RegistryError,
    WorkspaceExists,
    WorkspaceNotFound,
)

ENV_API_KEY = "FEATUREPLANE_API_KEY"
DEFAULT_TOKEN_FILE = "~/.featureplane/tokens.json"


class ServerError(RegistryError, FeatureplaneError):
    """The server refused or could not be reached; the message says what to do."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def normalize_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ServerError(f"{url!r} is not a server URL (expected http:// or https://host[:port])")
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))


def token_file(path: str | os.PathLike | None = None) -> Path:
    return Path(os.path.expanduser(str(path or DEFAULT_TOKEN_FILE)))


def read_tokens(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ServerError(f"cannot read the token file {path}: {exc}") from None
    servers = data.get("servers") if isinstance(data, dict) else None
    return servers if isinstance(servers, dict) else {}


def _write_tokens(path: Path, servers: dict[str, dict[str, Any]]) -> None:
    """Write the file readable by its owner only (0600, its directory 0700), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"servers": servers}, handle, indent=2, sort_keys=True)
            handle.write("\n")
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def save_token(path: Path, url: str, token: str, user: str, expires_at: str) -> None:
    servers = read_tokens(path)
    servers[normalize_url(url)] = {"token": token, "user": user, "expires_at": expires_at}
    _write_tokens(path, servers)


def forget_token(path: Path, url: str) -> dict[str, Any] | None:
    """Remove the server's token from the file; returns what was stored, if anything."""
    servers = read_tokens(path)
    entry = servers.pop(normalize_url(url), None)
    if entry is not None:
        _write_tokens(path, servers)
    return entry


def _workspace_not_found(detail: str) -> WorkspaceNotFound:
    error = WorkspaceNotFound("")
    error.args = (detail,)
    return error


_ERRORS = {
    "workspace_not_found": _workspace_not_found,
    "workspace_exists": WorkspaceExists,
    "conflict": ConflictError,
    "plan_refused": PlanRefused,
}


class ServerClient:
    def __init__(
        self,
        url: str,
        *,
        token_path: str | os.PathLike | None = None,
        timeout: float = 30.0,
        credential: str | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.token_path = token_file(token_path)
        self.timeout = timeout
        self._credential = credential

    def credential(self) -> str | None:
        if self._credential:
            return self._credential
        key = os.environ.get(ENV_API_KEY)
        if key:
            return key
        entry = read_tokens(self.token_path).get(self.url) or {}
        return entry.get("token") or None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        auth: bool = True,
    ) -> Any:
        """The decoded JSON answer (None for 204). Errors raise as described in the module's docstring."""
        url = self.url + "/api/v1" + path
        given = {k: v for k, v in (query or {}).items() if v is not None}
        if given:
            url += "?" + urllib.parse.urlencode(given)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, default=str).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            credential = self.credential()
            if credential:
                headers["Authorization"] = f"Bearer {credential}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise self._error(exc) from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(f"cannot reach the featureplane server at {self.url}: {reason}") from None
        return json.loads(payload) if payload else None

    def _error(self, exc: urllib.error.HTTPError) -> Exception:
        try:
            answer = json.loads(exc.read() or b"{}")
        except ValueError:
            answer = {}
        detail = str(answer.get("detail") or exc.reason or "error").replace("\n", " ")
        code = str(answer.get("error") or "")
        if exc.code == 401:
            hint = (
                f"${ENV_API_KEY} is not an active API key"
                if os.environ.get(ENV_API_KEY) and not self._credential
                else f"sign in with `featureplane login --url {self.url}`"
            )
            return ServerError(f"{self.url}: not signed in ({detail}); {hint}", 401, code)
        make = _ERRORS.get(code)
        if make is not None:
            return make(detail)
        return ServerError(f"{detail} (HTTP {exc.code} from {self.url})", exc.code, code)


def client_for(settings: Any) -> ServerClient:
    """The client of a ``registry: {type: remote, ...}`` section."""
    return ServerClient(settings.url, token_path=settings.token_file, timeout=settings.timeout_seconds)


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")
