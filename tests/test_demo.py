"""The demo end to end, in its quick setting: real training, the honest table, the report."""

import json

import pytest

from mentalese.demo import DemoConfig, run_demo
from mentalese.errors import MentaleseError


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # the baseline rows; each method's own test file runs its rows
    report = run_demo(DemoConfig(quick=True, output_dir=str(out), rows=["cot-sft", "nocot-sft"]))
    return out, report


def test_quick_demo_separates_cot_from_no_cot(quick_demo):
    # recorded 2026-11-21 on 2 CPU cores: CoT-SFT 97.0%, No-CoT-SFT 17.5%, majority answer 17.5%
    out, _ = quick_demo
    results = json.loads((out / "results.json").read_text())
    cot, nocot = results["rows"]["CoT-SFT"], results["rows"]["No-CoT-SFT"]
    assert cot["accuracy"] >= 0.9
    assert nocot["accuracy"] <= 0.4
    assert cot["mean_generated_tokens"] > nocot["mean_generated_tokens"]
    assert results["majority_baseline_accuracy"] < 0.3


def test_report_has_table_plots_and_samples(quick_demo):
    out, report = quick_demo
    text = report.read_text()
    assert "| CoT-SFT |" in text and "| No-CoT-SFT |" in text and "majority answer" in text
    for png in ("accuracy_tokens.png", "loss_curves.png"):
        assert (out / png).stat().st_size > 1000 and f"]({png})" in text
    assert (out / "demo_config.yaml").is_file()
    assert (out / "cot-sft" / "eval" / "predictions.jsonl").is_file()


def test_rerun_reuses_finished_rows(quick_demo):
    out, _ = quick_demo
    weights = out / "cot-sft" / "model" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    run_demo(DemoConfig(quick=True, output_dir=str(out), rows=["cot-sft"]))
    assert weights.stat().st_mtime_ns == before


def test_unknown_row():
    with pytest.raises(MentaleseError, match="unknown demo rows"):
        DemoConfig(rows=["codi-v9"])
