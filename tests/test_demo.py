"""The demo end to end, in its quick setting: real training, the honest table, the report, a calm terminal."""

import ast
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mentalese.commands.demo import DEMOS, DemoConfig, run_demo
from mentalese.errors import MentaleseError

DEMO_SRC = Path(__file__).resolve().parents[1] / "src" / "mentalese" / "commands" / "demo"


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    terminal = io.StringIO()
    with contextlib.redirect_stdout(terminal), contextlib.redirect_stderr(terminal):
        # the baseline rows; each method's own test file runs its rows
        report = run_demo(DemoConfig(quick=True, output_dir=str(out), rows=["cot-sft", "nocot-sft"]))
    return out, report, terminal.getvalue()


def test_quick_demo_separates_cot_from_no_cot(quick_demo):
    # recorded 2026-11-21 on 2 CPU cores: CoT-SFT 97.0%, No-CoT-SFT 17.5%, majority answer 17.5%
    out, _, _ = quick_demo
    results = json.loads((out / "results.json").read_text())
    cot, nocot = results["rows"]["CoT-SFT"], results["rows"]["No-CoT-SFT"]
    assert cot["accuracy"] >= 0.9
    assert nocot["accuracy"] <= 0.4
    assert cot["mean_generated_tokens"] > nocot["mean_generated_tokens"]
    assert results["majority_baseline_accuracy"] < 0.3


def test_terminal_is_calm(quick_demo):
    """A header, one result line per table line, the reference line, the table's path; no log dicts."""
    _, _, terminal = quick_demo
    lines = terminal.strip().splitlines()
    assert "{'loss'" not in terminal and "'train_runtime'" not in terminal
    results = [line for line in lines if " accuracy " in line]
    assert len(results) == 3, terminal  # CoT-SFT, No-CoT-SFT, majority answer
    assert results[0].startswith("cot-sft") and "CoT-SFT" in results[0] and results[0].endswith(" s)")
    assert len(lines) == 5, terminal


def test_training_logs_go_to_the_run_directory(quick_demo):
    out, _, _ = quick_demo
    records = [json.loads(line) for line in (out / "cot-sft" / "train_log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert len(losses) == 500 // 25  # logging_steps 25 of the recipe, 500 quick steps
    assert losses[0]["step"] == 25 and "total_flos" not in losses[0]
    assert any("train_runtime" in r for r in records)


@pytest.mark.parametrize("verbose", [False, True])
def test_log_dicts_are_printed_only_when_verbose(tmp_path, monkeypatch, capsys, verbose):
    from types import SimpleNamespace

    from mentalese.console import set_verbose
    from mentalese.methods.checkpoints import QuietLogCallback

    monkeypatch.setenv("MENTALESE_VERBOSE", "0")
    set_verbose(verbose)
    callback = QuietLogCallback(tmp_path)
    state = SimpleNamespace(is_world_process_zero=True, global_step=25)
    callback.on_log(None, state, None, logs={"loss": 0.5, "total_flos": 1.0})
    assert json.loads((tmp_path / "train_log.jsonl").read_text()) == {"step": 25, "loss": 0.5}
    assert ("{'step': 25, 'loss': '0.5'}" in capsys.readouterr().out) is verbose


def test_report_has_tables_family_sections_and_plots(quick_demo):
    out, report, _ = quick_demo
    text = report.read_text()
    table = (out / "table.md").read_text()
    assert table.strip() in text  # the reproducible table, verbatim
    assert table.splitlines()[2].startswith("| Baselines | CoT-SFT | ")
    assert "| majority answer (reference) | " in table
    assert "latency" not in table and "train time" not in table  # machine-dependent: the timings table
    assert "## Timings (machine-dependent)" in text and "| CoT-SFT | " in text.split("## Timings")[1]
    baselines = text.split("## Baselines\n\n")[1]
    assert baselines.startswith("CoT-SFT and No-CoT-SFT show") and "they say nothing" in baselines.split("\n")[0]
    assert "## CODI" not in text and "## BoLT" not in text  # only the families that ran
    for png in ("accuracy_tokens.png", "loss_curves.png"):
        assert (out / png).stat().st_size > 1000 and f"]({png})" in text
    assert (out / "demo_config.yaml").is_file()
    assert (out / "cot-sft" / "eval" / "predictions.jsonl").is_file()


def test_rerun_reuses_finished_rows(quick_demo):
    out, _, _ = quick_demo
    weights = out / "cot-sft" / "model" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    run_demo(DemoConfig(quick=True, output_dir=str(out), rows=["cot-sft"]))
    assert weights.stat().st_mtime_ns == before


def test_same_seed_same_table(tmp_path):
    """The reproducible table is the same text from two fresh runs (a tiny setting of the demo)."""
    tables = []
    for name in ("a", "b"):
        cfg = DemoConfig(output_dir=str(tmp_path / name), rows=["nocot-sft"], train_examples=200, test_examples=40,
                         train_steps=20)
        with contextlib.redirect_stdout(io.StringIO()):
            run_demo(cfg)
        tables.append((tmp_path / name / "table.md").read_text())
    assert tables[0] == tables[1]


def test_unknown_row():
    with pytest.raises(MentaleseError, match="unknown demo rows"):
        DemoConfig(rows=["codi-v9"])


def test_demos_are_commands():
    assert set(DEMOS) == {"chain", "bolt-toy", "compare"}
    assert DEMOS["chain"].config is DemoConfig and DEMOS["chain"].run is run_demo
    from mentalese.methods.bolt.experiment import ToyExperimentConfig, run_toy_experiment

    assert (DEMOS["bolt-toy"].config, DEMOS["bolt-toy"].run) == (ToyExperimentConfig, run_toy_experiment)


def test_rows_are_an_explicit_table():
    """ROWS is one dict literal in rows.py; no module of the demo adds to it, and methods/ never imports the demo."""
    from mentalese.commands.demo.rows import FAMILIES, ROWS

    assert list(ROWS) == DemoConfig().rows == ["cot-sft", "nocot-sft", "bolt", "soft-thinking", "codi", "icot", "coconut"]
    assert {row.family for row in ROWS.values()} <= set(FAMILIES)
    for path in DEMO_SRC.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            assert not (isinstance(node, ast.FunctionDef) and node.name.startswith("register")), path
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:  # no ROWS[...] = ... anywhere
                    assert not (isinstance(t, ast.Subscript) and getattr(t.value, "id", "") in ("ROWS", "FAMILIES"))
    code = ("import sys, mentalese.methods.sft, mentalese.methods.codi.trainer, mentalese.methods.bolt.em, "
            "mentalese.methods.thinking_toy; print(sorted(m for m in sys.modules if m.startswith('mentalese.commands')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
