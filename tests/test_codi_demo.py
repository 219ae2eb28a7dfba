"""The CODI demo row in quick mode (real training), and the efficiency comparison on its models."""

import json

import pytest

from mentalese.commands.demo import DemoConfig, run_demo
from mentalese.commands.bench.codi_decode import CodiDecodeBenchConfig, bench_codi_decode
from mentalese.methods.codi.efficiency import cot_token_count
from mentalese.models.loading import load_tokenizer


@pytest.fixture(scope="module")
def quick_codi_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("codi_demo")
    run_demo(DemoConfig(quick=True, rows=["cot-sft", "codi"], output_dir=str(out)))
    return out


def predictions(path):
    with path.open() as f:
        return [json.loads(line) for line in f]


def test_codi_row_answers_in_few_tokens_after_its_latent_steps(quick_codi_demo):
    out = quick_codi_demo
    results = json.loads((out / "results.json").read_text())["rows"]
    cot, codi = results["CoT-SFT"], results["CODI"]
    n = DemoConfig().codi_num_latent
    assert codi["mean_decode_steps"] == pytest.approx(codi["mean_generated_tokens"] + n + 2)
    assert codi["mean_generated_tokens"] < 0.6 * cot["mean_generated_tokens"]  # no written CoT
    assert codi["num_errors"] == 0 and codi["num_truncated"] == 0
    preds = predictions(out / "codi" / "eval" / "predictions.jsonl")
    assert all(p["samples"][0]["text"].startswith("The answer is:") for p in preds)
    assert all(p["samples"][0]["info"]["latent_steps"] == n + 2 for p in preds)
    # the table's compression is CoT-SFT's mean CoT tokens over the n + 2 latent steps
    tok = load_tokenizer(out / "cot-sft" / "model")
    cot_texts = [p["samples"][0]["text"] for p in predictions(out / "cot-sft" / "eval" / "predictions.jsonl")]
    expected = sum(cot_token_count(t, tok) for t in cot_texts) / len(cot_texts) / (n + 2)
    assert codi["compression"] == pytest.approx(expected)
    assert codi["speedup_batch_1"] > 0
    assert "| CODI |" in (out / "report.md").read_text()


def test_efficiency_comparison(quick_codi_demo, tmp_path):
    out = quick_codi_demo
    cfg = CodiDecodeBenchConfig(codi_model=str(out / "codi" / "model"), cot_model=str(out / "cot-sft" / "model"),
                                task_options={"num_steps": 4}, limit=16, batch_1_limit=4, batch_size=8, repeats=1,
                                output=str(tmp_path / "eff.json"))
    result = bench_codi_decode(cfg)
    assert json.loads((tmp_path / "eff.json").read_text()) == result
    assert result["batch_1"]["num_examples"] == 4 and result["batch_8"]["num_examples"] == 16
    assert result["compression"] == pytest.approx(result["cot_sft_mean_cot_tokens"] / (result["num_latent"] + 2))
    assert result["batch_8"]["codi_generated_tokens"] < result["batch_8"]["cot_generated_tokens"]
