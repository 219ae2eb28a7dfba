"""The demo's soft-thinking rows in quick mode: real training of the toy thinking model, five decodings."""

import json

import pytest

from mentalese.commands.demo import DemoConfig, run_demo

ROWS = ["Think greedy", "Think sampling", "Soft thinking", "Soft + Dirichlet", "Soft + Gumbel"]


@pytest.fixture(scope="module")
def quick_soft_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("soft_demo")
    report = run_demo(DemoConfig(quick=True, output_dir=str(out), rows=["soft-thinking"]))
    return out, report


def test_rows_and_outcomes(quick_soft_demo):
    # recorded 2026-11-21 (2 CPU cores): greedy 30.0%, sampling 26.0% (pass@4 57%), soft 17.0% (pass@4 23%),
    # Dirichlet 16.2% (38%), Gumbel 21.5% (51%); majority answer 17.5%; JS(soft, top-1) 1.7e-6, JS(soft, top-2) 0.19
    out, _ = quick_soft_demo
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert list(rows) == ROWS
    assert rows["Think greedy"]["accuracy"] > results["majority_baseline_accuracy"]
    for name in ROWS:
        assert rows[name]["mean_thinking_tokens"] >= 10  # the model thinks before answering
        assert rows[name]["num_errors"] == 0
    assert rows["Think sampling"]["pass@4"] > rows["Think sampling"]["pass@1"] + 0.1
    assert rows["Soft + Gumbel"]["pass@4"] > rows["Soft thinking"]["pass@4"]  # the paper's fix for the greedy pitfall


def test_single_threaded_evidence(quick_soft_demo):
    out, _ = quick_soft_demo
    js = json.loads((out / "soft-thinking" / "analysis" / "js.json").read_text())
    assert js["num_steps"] >= 100
    assert js["mean"]["js_soft_top1"] < 0.01
    assert js["mean"]["js_soft_top2"] > 10 * js["mean"]["js_soft_top1"]
    lens = json.loads((out / "soft-thinking" / "analysis" / "logit_lens.json").read_text())
    assert len(lens["share_top1"]) == 3  # embeddings + 2 layers


def test_report_has_the_soft_section_and_plots(quick_soft_demo):
    out, report = quick_soft_demo
    text = report.read_text()
    section = text.split("\n## Soft thinking\n\n")[1].split("\n## ")[0]
    assert section.startswith("The soft-thinking rows decode one half-trained toy thinking model")
    assert "| Soft + Gumbel |" in (out / "table.md").read_text() and "JS(soft, top-1)" in section
    for png in ("passk.png", "js.png", "logit_lens.png"):
        assert (out / "soft-thinking" / "analysis" / png).stat().st_size > 1000
        assert f"soft-thinking/analysis/{png}" in section
