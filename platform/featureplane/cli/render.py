"""Terminal output: plans readable at a glance, tables of workspaces."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from featureplane.registry.base import WorkspaceInfo
from featureplane.registry.plan import CREATE, DELETE, RECREATE, UPDATE, Plan, kind_label

STYLE = {CREATE: ("+", "green"), UPDATE: ("~", "yellow"), RECREATE: ("!", "magenta"), DELETE: ("-", "red")}


def render_plan(console: Console, plan: Plan, *, show_diffs: bool = True) -> None:
    kind = "live" if plan.live else "development"
    console.print(
        Text.assemble(
            "Plan for workspace ", (plan.workspace, "bold"), f" ({kind}, version {plan.base_version})"
        )
    )
    if plan.empty:
        console.print("  No changes: the workspace matches the repository.")
        return
    width = max(len(kind_label(c.kind)) for c in plan.changes)
    for change in plan.changes:
        symbol, color = STYLE[change.action]
        line = Text("  ")
        line.append(f"{symbol} {change.action:<8} ", style=f"bold {color}")
        line.append(f"{kind_label(change.kind):<{width}}  ")
        line.append(change.name, style="bold")
        details = []
        if change.action == UPDATE and change.fields:
            details.append(", ".join(change.fields))
        details += change.reasons
        if change.backfill_partitions:
            details.append(f"backfills {change.backfill_partitions:,} partition(s)")
        if details:
            line.append("  (" + "; ".join(details) + ")", style="dim")
        console.print(line)
        if change.blocked:
            console.print(Text("      blocked: " + change.blocked, style="bold red"))
        if show_diffs and change.action == RECREATE:
            for diff_line in change.transformation_diff()[:40]:
                style = (
                    "green" if diff_line.startswith("+") else "red" if diff_line.startswith("-") else "dim"
                )
                console.print(Text("      " + diff_line, style=style))
    counts = plan.counts()
    summary = Text("\n  ")
    for action in (CREATE, UPDATE, RECREATE, DELETE):
        symbol, color = STYLE[action]
        summary.append(f"{counts[action]} to {action}", style=color if counts[action] else "dim")
        if action != DELETE:
            summary.append(", ")
    console.print(summary)
    if counts[RECREATE] or counts[DELETE]:
        console.print(
            "  Recreated and deleted feature views lose their materialized data; recreated views are rebuilt by a backfill.",
            style="dim",
        )


def render_workspaces(console: Console, workspaces: list[WorkspaceInfo], current: str | None) -> None:
    table = Table(box=None, pad_edge=False)
    table.add_column("")
    table.add_column("workspace", style="bold")
    table.add_column("kind")
    table.add_column("version", justify="right")
    table.add_column("updated")
    for ws in workspaces:
        table.add_row("*" if ws.name == current else "", ws.name, ws.kind, str(ws.version), ws.updated_at)
    console.print(table)
