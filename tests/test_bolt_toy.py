"""The BoLT toy's ground truth: derivations by hand, the teacher, the graders, and the E-step thought statistics."""

import json
import math

import pytest

import mentalese.methods.bolt.experiment as experiment
from mentalese.config import load_config
from mentalese.errors import MentaleseError
from mentalese.methods.bolt.config import BoltConfig
from mentalese.methods.bolt.toy import (ToyCorpusConfig, derivation, derivation_teacher, thought_is_correct,
                                        toy_documents, toy_thought, true_thought)
from mentalese.recipes import resolve_recipe


def test_derivations_by_hand():
    assert derivation("7+5*3") == "7+5=2 2*3=6"  # 12 mod 10 = 2, then 6
    assert derivation("3*7-7") == "3*7=1 1-7=4"  # 21 -> 1, 1 - 7 = -6 -> 4
    assert derivation("9-9-9", modulus=7) == "9-9=0 0-9=5"  # -9 mod 7 = 5
    assert toy_thought("3*7-7") == "3*7-7: 3*7=1 1-7=4"
    with pytest.raises(MentaleseError, match="not a chain question"):
        derivation("3*x")


def test_teacher_and_graders():
    prefix = "Q: 3*7-7. "
    assert true_thought(prefix, "The answer is: 4.\n") == "3*7-7: 3*7=1 1-7=4"
    assert true_thought("", "Q: 3*7-7. ") == ""  # question chunks think nothing
    assert derivation_teacher().complete([f"{prefix}|The answer is: 4.\n"])[0] == "3*7-7: 3*7=1 1-7=4"
    assert thought_is_correct("3*7-7", " 3*7-7: 3*7=1 1-7=4 ")
    assert not thought_is_correct("3*7-7", "3*7-7: 3*7=1 1-7=6")
    docs = toy_documents(ToyCorpusConfig(documents=3, problems_per_document=1, num_steps=2))
    assert len(docs) == 3 and all(t.startswith("Q: ") and t.endswith(".\n") for _, t in docs)


def test_final_result():
    assert experiment.final_result("3*7-7: 3*7=1 1-7=4") == "4"
    assert experiment.final_result("no derivation") is None


def test_thought_stats_counts_answer_chunks_only(tmp_path, monkeypatch):
    """Proposals and selections are graded against the true thought; question chunks are not counted."""
    bolt = load_config(BoltConfig, resolve_recipe("bolt/toy_chain"),
                       ["toy_options.documents=2", f"output_dir={tmp_path}"])
    (tmp_path / "iter_1" / "estep").mkdir(parents=True)
    (tmp_path / "iter_1" / "estep" / "manifest.json").write_text("{}")
    docs = [("a", "Q: 3*7-7. The answer is: 4.\n"), ("b", "Q: 1+1+1. The answer is: 3.\n")]
    monkeypatch.setattr(experiment, "load_documents", lambda cfg: docs)
    records = [
        {"chunk_id": "a#0", "thought": "", "proposals": ["", ""], "closed": [True, True]},
        {"chunk_id": "a#1", "thought": "3*7-7: 3*7=1 1-7=4", "closed": [True, True],
         "proposals": ["3*7-7: 3*7=1 1-7=4", "3*7-7: 3*7=2 2-7=5"]},
        {"chunk_id": "b#1", "thought": "1+2+1: 1+2=3 3+0=3", "closed": [True, False],
         "proposals": ["1+2+1: 1+2=3 3+0=3", "1+1+1: 1+1=2 2+1=3"]},  # the unclosed one is not counted
        {"chunk_id": "b#0", "thought": None, "proposals": ["x", "y"], "closed": [False, False]},
    ]
    monkeypatch.setattr(experiment, "read_estep", lambda path: records)
    stats = experiment.thought_stats(tmp_path, bolt, 1)
    assert stats == {"proposals_correct": 1 / 4, "selected_correct": 1 / 2, "selected_result_correct": 2 / 2}
    assert experiment.thought_stats(tmp_path, bolt, 2) == {}


def test_seeds_table_means_by_hand():
    from mentalese.methods.bolt.report import seeds_table

    rows = [{"variant": "em-k4", "label": "EM K=4", "iteration": 1, "seed": 0, "accuracy": 0.4,
             "selected_result_correct": 0.5},
            {"variant": "em-k4", "label": "EM K=4", "iteration": 1, "seed": 1, "accuracy": 0.7,
             "selected_result_correct": math.nan},
            {"variant": "raw-compute", "label": "raw", "iteration": 0, "seed": 1, "accuracy": 0.14}]
    table = seeds_table(rows, [0, 1]).splitlines()
    assert table[2] == "| EM K=4 | 1 | 55.0% | 40.0% / 70.0% | - | - | - | 50.0% |"  # nan is left out of means
    assert table[3] == "| raw | 0 | 14.0% | - / 14.0% | - | - | - | - |"  # a seed without the run shows "-"


def test_several_seeds_run_apart_and_are_averaged(tmp_path):
    from mentalese.methods.bolt.experiment import ToyExperimentConfig, run_toy_experiment

    cfg = ToyExperimentConfig(output_dir=str(tmp_path), variants=["raw-compute"], iterations=1, quick=True,
                              seeds=[0, 3], overrides=["max_steps=4", "task_options.num_examples=8"])
    report = run_toy_experiment(cfg).read_text()
    for seed in (0, 3):
        bolt = load_config(BoltConfig, tmp_path / f"seed_{seed}" / "raw-compute" / "config.yaml", [])
        assert bolt.seed == seed and bolt.estep.seed == seed
        assert (tmp_path / f"seed_{seed}" / "report.md").exists()
    rows = json.loads((tmp_path / "results.json").read_text())
    accs = [r["accuracy"] for r in rows]
    assert [r["seed"] for r in rows] == [0, 3]
    assert f"| {100 * sum(accs) / 2:.1f}% |" in report and "seeds=[0, 3]" in report
    assert (tmp_path / "bolt_toy_seeds.png").stat().st_size > 1000
    with pytest.raises(MentaleseError, match="seeds"):
        ToyExperimentConfig(seeds=[1, 1])
