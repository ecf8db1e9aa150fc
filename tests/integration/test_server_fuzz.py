"""The account server's API fuzzed from its own OpenAPI document (schemathesis): valid and invalid
requests to every operation, signed in as an admin (so requests get past sign-in to the handlers) and
as nobody, and not one answer may be a 500."""

from __future__ import annotations

import pytest
from account_server import ADMIN, ADMIN_PASSWORD, start_account_server

pytestmark = pytest.mark.integration

EXAMPLES = 20  # per operation and mode: about 25 operations, bounded to keep the run short


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_account_server(tmp_path_factory.mktemp("fuzz") / "server")
    admin = server.login(ADMIN, ADMIN_PASSWORD)
    server.call("POST", "/api/v1/workspaces", {"name": "prod", "live": True}, admin)
    yield server
    server.stop()


def fuzz(
    operation, mode, base_url: str, headers: dict[str, str], failures: list[str], statuses: list[int]
) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        statuses.append(response.status_code)
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
            )

    try:
        run()
    except Unsatisfiable:
        pass  # no invalid request exists for an operation without parameters or body


def test_no_request_from_the_openapi_document_gets_a_500(server):
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    admin = {"Authorization": f"Bearer {server.login(ADMIN, ADMIN_PASSWORD)}"}
    failures: list[str] = []
    statuses: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        if operation.path in ("/api/v1/logout", "/api/v1/me/password"):
            continue  # they end the admin's session, which the other operations need
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for headers in (admin, {}):
                fuzz(operation, mode, server.url, headers, failures, statuses)
    assert not failures, "\n".join(failures[:20])
    print(
        f"{len(statuses)} requests: " + ", ".join(f"{c}x{statuses.count(c)}" for c in sorted(set(statuses)))
    )
    assert len(statuses) > 500 and {200, 201, 401, 404, 422} <= set(statuses)
    assert "Traceback" not in server.log
