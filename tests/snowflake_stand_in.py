"""A local Snowflake for tests: fakesnow's HTTP server, spoken to by the real snowflake-connector-python
(and by Snowpark through it) over 127.0.0.1, so the production code path runs unchanged: login, queries,
Arrow results, describe, transactions, and write_pandas' PUT to a stage and COPY INTO.

fakesnow runs Snowflake SQL on DuckDB. Two of its server's answers are fixed here, both bugs of the
stand-in rather than behaviours of Snowflake (fakesnow 0.12.1):

- null timestamps lose their validity bit in Arrow results and reach the client as 1970-01-01;
- write_pandas copies files with ``COPY INTO t FROM (SELECT $1:c FROM '@stage')``, a quoted stage
  reference that Snowflake accepts and fakesnow reads as a URL without a scheme;
- logins carry no master token, so the connector cannot log out and ``close()`` leaves connections
  open (Snowpark then tries to cancel their queries at exit).

What fakesnow cannot run at all (``ASOF JOIN ... MATCH_CONDITION``) is not emulated: tests that need it
say so and assert the SQL instead.

Run as ``python snowflake_stand_in.py PORT``; every test uses its own database on the shared server.
"""

from __future__ import annotations

import sys
from typing import Any


def _patch_fakesnow() -> None:
    import fakesnow.arrow
    import fakesnow.copy_into
    import pyarrow as pa
    from sqlglot import exp

    to_struct = fakesnow.arrow.timestamp_to_sf_struct

    def timestamp_to_sf_struct(ts: pa.Array | pa.ChunkedArray) -> pa.Array:
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        struct = to_struct(ts)
        if not ts.null_count:
            return struct
        children = [struct.field(i) for i in range(struct.type.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(struct.type), mask=ts.is_null())

    fakesnow.arrow.timestamp_to_sf_struct = timestamp_to_sf_struct

    from_source = fakesnow.copy_into._from_source

    def quoted_stage_source(expr: exp.Copy) -> str:
        query = expr.args["files"][0].this
        if isinstance(query, exp.Select):
            table = query.args["from_"].this
            if isinstance(table.this, exp.Literal) and table.this.name.startswith("@"):
                table.set("this", exp.Var(this=table.this.name))
        return from_source(expr)

    fakesnow.copy_into._from_source = quoted_stage_source


def _app() -> Any:
    import json

    import fakesnow.server
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def login(request: Request) -> JSONResponse:
        response = await fakesnow.server.login_request(request)
        body = json.loads(response.body)
        if body.get("success"):
            body["data"]["masterToken"] = body["data"]["token"]
        return JSONResponse(body)

    routes = [
        Route(route.path, login, methods=["POST"]) if route.path == "/session/v1/login-request" else route
        for route in fakesnow.server.routes
    ]
    return Starlette(routes=routes)


def main() -> None:
    import uvicorn

    _patch_fakesnow()
    uvicorn.run(_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")


if __name__ == "__main__":
    main()
