"""``featureplane delete-keys``: remove entities' rows from a feature view's stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from featureplane.cli.common import (
    ConfigOption,
    WorkspaceOption,
    authorize_or_fail,
    console,
    err,
    fail,
    runtime_from,
    workspace_name,
)


def delete_keys(
    view: Annotated[str, typer.Option("--view", help="The feature view whose rows go.")],
    keys_file: Annotated[
        Path,
        typer.Option("--keys-file", help="CSV file: a header naming the view's join keys, one key a line."),
    ],
    online: Annotated[
        bool, typer.Option("--online/--no-online", help="Delete from the online store.")
    ] = True,
    offline: Annotated[
        bool, typer.Option("--offline/--no-offline", help="Delete from the offline store.")
    ] = True,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Delete the keys' rows from the view's offline store, then its online store (right to be forgotten).

    Every key is checked first: a bad one deletes nothing. Running it again is safe. With a remote
    registry the server deletes them and records it in its audit log."""
    from featureplane.materialization.deletion import (
        CsvKeys,
        DeletionError,
        DeletionIncomplete,
        deletable_view,
    )
    from featureplane.materialization.deletion import delete_keys as run
    from featureplane.registry.remote import RemoteRegistry

    runtime = runtime_from(config)
    state = runtime.registry.load(workspace_name(runtime.config, workspace))
    try:
        spec = deletable_view(state, view)
        keys = CsvKeys(keys_file, spec)
        if isinstance(runtime.registry, RemoteRegistry):
            names = spec.join_key_names
            # The whole file is checked before the first request deletes anything.
            if sum(1 for _ in keys) == 0:
                raise DeletionError(f"no keys to delete from {view!r}: the list of keys is empty")
            rows = (dict(zip(names, key, strict=True)) for key in keys)
            report = runtime.registry.delete_keys(state.name, view, rows, online=online, offline=offline)
        else:
            actor = authorize_or_fail(
                runtime.config, state.name, "apply", f"delete keys in workspace {state.name!r}"
            )
            result = run(runtime, state, view, keys, online=online, offline=offline, progress=err.print)
            report = result.to_json()
            if actor is not None:
                _audit(runtime.config, actor, report)
    except DeletionIncomplete as exc:
        raise fail(str(exc)) from None
    except DeletionError as exc:
        raise fail(str(exc)) from None
    for store in ("offline", "online"):
        done = report.get(store)
        if done:
            console.print(
                f"{state.name}/{view}: {store} store: {done['keys']:,} key(s), {done['rows']:,} row(s) removed."
            )


def _audit(config, actor: str, report: dict) -> None:
    """With auth on, a local delete is in the local audit log too (counts, never key values)."""
    from featureplane.access import open_access_store

    store = open_access_store(config)
    try:
        counts = "; ".join(f"{s}: {report[s]['rows']} row(s)" for s in ("offline", "online") if report.get(s))
        store.record_audit(
            actor,
            "feature_view.delete_keys",
            report["workspace"],
            report["view"],
            f"{report['keys']} key(s); {counts}",
        )
    finally:
        store.close()
