"""`mentalese demo compare`: rows train once per seed, results are cached, the table aggregates seeds."""

import json

import pytest

from mentalese.commands.cli import main
from mentalese.commands.demo.compare import CompareConfig, run_compare
from mentalese.commands.demo.compare_report import mean_range, thought_drop
from mentalese.errors import MentaleseError

SMALL = dict(rows=["nocot-sft"], shuffled_rows=["nocot-sft"], seeds=[0, 1], train_steps=5, train_examples=200,
             test_examples=12, batch_1_problems=2, threads=1)


def test_mean_and_range_by_hand():
    assert mean_range([0.5, 1.0, 0.476]) == "65.9 (47.6 to 100.0)"
    assert mean_range([-0.01, 0.015]) == "0.2 (-1.0 to 1.5)"
    assert mean_range([0.25]) == "25.0"
    assert mean_range([]) == "-"


def test_thought_drop_reads_the_tool_summary():
    assert thought_drop({"kept": {"accuracy": 0.9}, "swap": {"accuracy": 0.4}}, "swap") == pytest.approx(0.5)
    assert thought_drop(None, "swap") is None


def test_compare_runs_caches_and_aggregates(tmp_path, capsys):
    cfg = CompareConfig(output_dir=str(tmp_path), **SMALL)
    run_compare(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(r["variant"], r["seed"]) for r in results] == [("chain", 0), ("chain", 1), ("shuffled", 0), ("shuffled", 1)]
    shuffled = [json.loads(l) for l in (tmp_path / "shuffled/seed0/nocot-sft/eval/predictions.jsonl").open()]
    assert all(p["question"].endswith(";d?") for p in shuffled), "the shuffled variant uses named premises"
    plain = [json.loads(l) for l in (tmp_path / "chain/seed0/nocot-sft/eval/predictions.jsonl").open()]
    assert not any(";" in p["question"] for p in plain)
    table = (tmp_path / "table.md").read_text()
    accs = [r["accuracy"] for r in results if r["variant"] == "chain"]
    assert f"| No-CoT-SFT | {mean_range(accs)} |" in table
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file() and "/seed" in str(p)}
    run_compare(cfg)  # a finished comparison: nothing is retrained or re-evaluated
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file() and "/seed" in str(p)}
    assert before == after


def test_bad_rows_and_variants():
    with pytest.raises(MentaleseError, match="unknown rows"):
        CompareConfig(rows=["coconot"])
    with pytest.raises(MentaleseError, match="unknown variants"):
        CompareConfig(variants=["reversed"])


def test_cli_help_lists_compare(capsys):
    assert main(["demo", "compare", "--help"]) in (0, None)
    assert "shuffled_rows" in capsys.readouterr().out


@pytest.mark.parametrize("variant", ["chain", "shuffled"])
def test_every_row_and_start_has_its_default_training_data(variant):
    # the mixed-length base once asked for 5000 problems of 1-6 operations: too few 1-operation chains exist
    from mentalese.commands.demo.compare_rows import ROWS, STARTS
    from mentalese.tasks.synthetic import generate_chain

    cfg = CompareConfig()
    for row in [*ROWS.values(), *STARTS.values()]:
        options = cfg.task_options(variant, "train", 0, row.extra.get("num_steps"))
        assert len(generate_chain("train", **options)) == cfg.train_examples


def test_a_cached_row_is_not_reported_for_other_settings(tmp_path):
    cfg = CompareConfig(output_dir=str(tmp_path), **{**SMALL, "variants": ["chain"], "seeds": [0]})
    run_compare(cfg)
    with pytest.raises(MentaleseError, match=r"made with other settings \(settings"):
        run_compare(CompareConfig(output_dir=str(tmp_path), **{**SMALL, "variants": ["chain"], "seeds": [0],
                                                               "train_steps": SMALL["train_steps"] + 1}))
    with pytest.raises(MentaleseError, match=r"other settings \(test_examples"):
        run_compare(CompareConfig(output_dir=str(tmp_path), **{**SMALL, "variants": ["chain"], "seeds": [0],
                                                               "test_examples": SMALL["test_examples"] + 1}))
