"""The stream benchmark's tables and verdicts, and their place in benchmarks/README.md."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- stream:begin -->", "<!-- stream:end -->"
FRESH_VIEW = "user_transaction_counts_5m"


def report(results: dict) -> str:
    meta = results["meta"]
    lines = [
        f"Run {meta['date']} on {meta['machine']}, {meta['cpus']} CPU(s), Python {meta['python']}; "
        f"{meta['events']:,} events of {meta['users']:,} users; client, servers and processor on the same "
        "machine (127.0.0.1).",
        "",
        "Freshness: ingest acknowledgement to the value served by get-features (continuous mode)",
        "",
        "| view | processor poll interval | samples | p50 ms | p99 ms | max ms | ingest round trip p50 ms | p99 vs 1 s target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["freshness"]:
        offline = "offline=False" if row["view"].endswith("_online") else "offline=True"
        lines.append(
            f"| {row['view']} ({offline}) | {row['poll_interval_ms']:g} ms | {row['samples']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['max_ms']:.1f} | {row['ingest_p50_ms']:.1f} | {row['p99_ms'] / 1000:.2f}x |"
        )
    feast = results.get("feast", {}).get("runs", {})
    lines += [
        "",
        "Sustained processing of a backlog (pushed through the ingest API first), into the example's "
        f"{FRESH_VIEW} with offline=False (online only, as Feast's push here) unless the arm says otherwise; "
        "Feast pushes the same events as rows, as many per push as our batches hold",
        "",
        "| arm | events | seconds | events/s | vs Feast push, same batch size | read log s | process s | "
        "commit s | entity writes | commit ms per entity write |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in results["throughput"].items():
        anchor = feast.get(str(row["batch_size"]))
        vs = f"{row['events_per_second'] / anchor['events_per_second']:.1f}x" if anchor else ""
        lines.append(
            f"| {name} | {row['events']:,} | {row['seconds']:.1f} | {row['events_per_second']:,.0f} | {vs} | "
            f"{row['read_log_seconds']:.2f} | {row['process_seconds']:.2f} | {row['commit_seconds']:.2f} | "
            f"{row['entity_writes']:,} | {row['commit_seconds'] * 1000 / row['entity_writes']:.3f} |"
        )
    for batch, run in feast.items():
        lines.append(
            f"| Feast {meta['feast_version']} push, {int(batch):,} rows per push (latest row per user, no "
            f"windows) | {run['events']:,} | {run['seconds']:.1f} | {run['events_per_second']:,.0f} | 1.0x "
            "| | | | | |"
        )
    profile = results.get("sqlite_profile")
    if profile:
        shares = ", ".join(f"{name} {share:.0%}" for name, share in profile.items())
        lines += [
            "",
            f"Where the SQLite processor's time goes (cProfile, own time, {meta['profile_events']:,} events in "
            f"batches of {meta['batch_sizes'][0]:,}): {shares}.",
        ]
    latency = results["lookup"]
    tiles = results["tiles"]
    lines += [
        "",
        f"Lookup latency: get-features, 1 key, 1 client, {meta['lookup_rounds']} rounds of "
        f"{meta['lookup_seconds']:g} s per view, same server, the {results['lookup_users']:,} users both "
        "views hold a row for",
        "",
        "| view | mean tiles per user | p50 ms | p99 ms | requests/s | p50 vs batch |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for service, view in (("batch_lookup", "batch_counts_1d"), ("stream_lookup", "stream_counts_1d")):
        row = latency[service]
        ratio = row["p50_ms"] / latency["batch_lookup"]["p50_ms"]
        lines.append(
            f"| {view} | {tiles[view]['mean_tiles']:.2f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['requests_per_second']:,.0f} | {ratio:.2f}x |"
        )
    lines += ["", *verdicts(results)]
    return "\n".join(lines)


def verdicts(results: dict) -> list[str]:
    out = []
    default = results["freshness"][0]
    p99 = default["p99_ms"]
    out.append(
        f"- Freshness p99 {p99:.0f} ms at the default poll interval: "
        + ("**meets** the 1 s target" if p99 <= 1000 else f"**misses** the 1 s target by {p99 - 1000:.0f} ms")
    )
    feast = results.get("feast", {}).get("runs", {})
    for name, row in results["throughput"].items():
        anchor = feast.get(str(row["batch_size"]))
        if not anchor or not name.startswith("SQLite") or "offline=True" in name:
            continue
        ratio = row["events_per_second"] / anchor["events_per_second"]
        out.append(
            f"- {name}: {ratio:.1f}x Feast's push events/s at the same batch size: "
            + (
                "**meets** the 10x target"
                if ratio >= 10
                else f"**misses** the 10x target ({10 / ratio:.1f}x short)"
            )
        )
    if feast:
        out.append(
            "- Feast's push stores the rows it is given (the latest per user): it cannot compute the windows "
            "(counts, sums, distinct counts over the last 5 minutes) at all."
        )
    ratio = results["lookup"]["p50_ratio"]
    out.append(
        f"- Stream aggregate lookup p50 {ratio:.2f}x the batch aggregate's: "
        + ("**within** 1.5x" if ratio <= 1.5 else "**over** 1.5x")
    )
    return out


def write_readme(table: str) -> None:
    text = README.read_text()
    section = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    README.write_text(text)
