"""`make team-demo` runs end to end: PostgreSQL, the account server and a lookup service as real processes;
a user without a role is refused by the server until a role is granted; lookups answer through a key
created on the server; the audit log records it all."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from featureplane.util.local_postgres import server_binaries

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(server_binaries() is None, reason="PostgreSQL's server is not installed"),
]


def test_team_demo_runs_and_the_server_refuses_what_roles_do_not_allow(tmp_path):
    env = {**os.environ, "FEATUREPLANE_TEAM_DEMO_DIR": str(tmp_path / "team-demo"), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "team_demo.py")],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-6000:]
    assert "analyst plans against prod without a role: refused" in out
    assert "error: workspace 'prod' does not exist or you have no role on it" in out
    assert "analyst plans against prod (viewers may)" in out
    assert out.count(": refused") == 3 and "the server allowed it" not in out
    assert "may not delete workspace 'prod': that needs the owner role" in out
    assert "amount_count_30d" in out and "lookup failed" not in out
    for action in ("workspace.create", "apply", "role.assign", "api_key.create"):
        assert f" {action} " in out, action
    assert not (tmp_path / "team-demo" / "server.log").read_text().count("Traceback")
