"""The demo's iCoT-SI and Coconut rows (commands/demo/latent_baseline_rows.py), quick and from random tiny models
(codi_from_cot_sft=false), so only the wiring is tested: each row trains its recipe, decodes with its own strategy
and lands in its family's table section; a rerun reuses the trained models."""

import contextlib
import io
import json

from mentalese.commands.demo import DemoConfig, run_demo


def test_icot_and_coconut_rows(tmp_path):
    cfg = DemoConfig(quick=True, output_dir=str(tmp_path), rows=["icot", "coconut"], codi_from_cot_sft=False)
    terminal = io.StringIO()
    with contextlib.redirect_stdout(terminal), contextlib.redirect_stderr(terminal):
        run_demo(cfg)
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert set(rows) == {"iCoT-SI", "Coconut"}
    assert {"accuracy", "mean_generated_tokens"} <= set(rows["Coconut"]) and rows["iCoT-SI"]["num_examples"] == 200
    assert "iCoT-SI and Coconut" in (tmp_path / "report.md").read_text()
    table = (tmp_path / "table.md").read_text()
    assert "| 4 continuous thoughts |" in table  # c=1, 4 latent stages
    lines = [line for line in terminal.getvalue().splitlines() if " accuracy " in line]
    assert lines[0].startswith("icot") and lines[1].startswith("coconut"), terminal.getvalue()
    stages = sorted(p.name for p in (tmp_path / "coconut").glob("stage-*"))
    assert stages == ["stage-1", "stage-2", "stage-3", "stage-4"]
    mtime = (tmp_path / "coconut" / "model_dir.txt").stat().st_mtime_ns
    with contextlib.redirect_stdout(io.StringIO()):
        run_demo(cfg)  # the models are reused, not retrained
    assert (tmp_path / "coconut" / "model_dir.txt").stat().st_mtime_ns == mtime
