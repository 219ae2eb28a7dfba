"""The demo's BoLT rows in quick mode: three rows, the E-step ran on every inferred chunk, a report section."""

import json

import pytest

from mentalese.commands.demo import DemoConfig, run_demo


@pytest.fixture(scope="module")
def bolt_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("bolt_demo")
    run_demo(DemoConfig(quick=True, rows=["bolt"], output_dir=str(out)))
    return out


def test_quick_bolt_rows(bolt_demo):
    results = json.loads((bolt_demo / "results.json").read_text())["rows"]
    assert set(results) == {"BoLT raw only", "BoLT teacher thoughts", "BoLT EM iter 1 (K=4)"}
    raw, teacher, em = (results[k] for k in ("BoLT raw only", "BoLT teacher thoughts", "BoLT EM iter 1 (K=4)"))
    # quick mode trains 8 steps: the models are not expected to solve anything (see docs/LOG.md)
    for r in (raw, teacher, em):
        assert r["num_examples"] == 20 and r["num_errors"] == 0
    assert "latent" in teacher["prompt"] and "latent" not in raw["prompt"]
    rows = json.loads((bolt_demo / "bolt" / "results.json").read_text())
    em_row = next(r for r in rows if r["variant"] == "em-k4")
    assert em_row["proposer_chunks"] == 2 * (40 - 10)
    closed = em_row["proposer_elbo_k1_chunks"]
    assert closed + em_row["proposer_chunks_without_closed_proposal"] >= 1
    train = json.loads((bolt_demo / "bolt" / "em-k4" / "iter_1" / "mstep" / "train_metrics.json").read_text())
    assert train["chunks_with_thought"] == 20 + 60 - em_row["proposer_chunks_without_closed_proposal"]
    report = (bolt_demo / "report.md").read_text()
    section = report.split("\n## BoLT\n\n")[1].split("\n## One test problem")[0]
    assert section.startswith("The BoLT rows check that the pipeline runs end to end")
    assert "| BoLT EM iter 1 (K=4) |" in report and "](bolt/bolt_toy.png)" in section
    assert (bolt_demo / "bolt" / "bolt_toy.png").stat().st_size > 1000


def test_reproduce_line_round_trips():
    """The report's command carries the recipe, variants and overrides the experiment ran with."""
    import shlex

    from mentalese.config import load_config
    from mentalese.methods.bolt.experiment import ToyExperimentConfig
    from mentalese.methods.bolt.report import reproduce_command

    cfg = ToyExperimentConfig(output_dir="/tmp/a b", variants=["teacher", "em-k4"], iterations=2,
                              overrides=["model_name_or_path=tiny-gpt2", "tiny_model_options={}", "max_steps=5"])
    args = shlex.split(reproduce_command(cfg))
    assert args[:3] == ["mentalese", "demo", "bolt-toy"]
    assert load_config(ToyExperimentConfig, None, args[3:]) == cfg
    assert reproduce_command(ToyExperimentConfig()) == "mentalese demo bolt-toy output_dir=runs/bolt_toy iterations=3"


def test_raw_variants_get_the_plain_prompt(tmp_path):
    from mentalese.methods.bolt.experiment import ToyExperimentConfig, variant_config
    from mentalese.methods.bolt.toy import TOY_EVAL_PROMPT, TOY_LATENT_EVAL_PROMPT

    cfg = ToyExperimentConfig(output_dir=str(tmp_path))
    assert variant_config(cfg, "teacher").eval_prompt == TOY_LATENT_EVAL_PROMPT
    assert variant_config(cfg, "raw-compute").eval_prompt == TOY_EVAL_PROMPT
