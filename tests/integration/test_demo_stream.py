"""The example repository's stream view: it plans and applies with the rest of the example, and the demo's
stream step (``show_stream`` in scripts/demo.py, run by ``make demo``) pushes payments through the real
ingest API while ``featureplane stream run`` runs in the background, sees each one counted through the
real lookup API, and stops the processor by its pid."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.integration

sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402


def test_the_example_plans_and_applies_its_stream_view(applied_example):
    plan = applied_example.cli("plan", "-w", "prod").stdout
    assert "No changes" in plan  # applied as planned
    with applied_example.runtime() as runtime:
        state = runtime.registry.load("prod")
        view = state.feature_view(demo.STREAM_VIEW)
        assert view.kind == "stream" and view.stream_processing_mode == "continuous"
        assert [f.name for f in view.features] == [
            "amount_count_5m",
            "amount_sum_5m",
            "merchant_id_count_distinct_5m",
        ]
        assert state.definitions.sources[demo.STREAM_SOURCE].stream.get("type") != "kinesis"
        service = state.definitions.feature_services[demo.STREAM_SERVICE]
        assert [part.view for part in service.features][-1] == demo.STREAM_VIEW
        # fraud_detection (trained on) stays without it until training sets read stream views.
        training = state.definitions.feature_services[demo.SERVICE]
        assert demo.STREAM_VIEW not in [part.view for part in training.features]


def test_the_demo_stream_step_shows_each_pushed_payment_counted(applied_example, lookup_server, capsys):
    repo = applied_example
    server = lookup_server(repo)
    rows = demo.show_stream(server.url, "", "", repo.root)

    counts = [int(row["amount_count_5m"]) for row in rows]
    assert counts == [1, 2, 3]  # the user had no payments in the last five minutes; the refund is dropped
    sums = [row["amount_sum_5m"] for row in rows]
    amounts = [amount for amount, _ in demo.STREAM_PAYMENTS]
    assert sums == pytest.approx([sum(amounts[: i + 1]) for i in range(len(amounts))])
    assert [int(row["merchant_id_count_distinct_5m"]) for row in rows] == [1, 1, 2]
    out = capsys.readouterr().out
    assert f"{demo.STREAM_VIEW} for {demo.STREAM_USER}" in out and "Each payment counted" in out

    # The processor was stopped by its pid (SIGTERM) and finished its run cleanly.
    log = (repo.root / ".featureplane" / "demo-stream.log").read_text()
    assert "1 dropped by the transformation" in log  # the refund pushed first
    assert "4 batch(es), 3 record(s) applied" in log, log
    assert "Traceback" not in log
