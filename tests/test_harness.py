"""Evaluation harness: files, metric bookkeeping, sampling metrics, bad input."""

import json

import pytest

from mentalese.decoding.loop import DecodeConfig
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import EvalConfig, evaluate
from mentalese.evaluation.run import run_eval
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.tasks.registry import get_benchmark, load_benchmark


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_chain_run):
    return load_model_and_tokenizer(tiny_chain_run / "model", dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def examples():
    return load_benchmark("chain", "test", num_steps=2, num_examples=40)


def test_greedy_eval_writes_consistent_files(model_and_tokenizer, examples, tmp_path):
    model, tok = model_and_tokenizer
    metrics = evaluate(model, tok, examples, get_benchmark("chain"), DecodeConfig(max_new_tokens=40),
                       output_dir=tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and [r["id"] for r in rows] == [e.id for e in examples]
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert not list(tmp_path.glob("*.tmp"))
    strict = [s["correct_strict"] for r in rows for s in r["samples"]]
    assert metrics["accuracy"] == pytest.approx(sum(strict) / 40)
    tokens = [s["num_tokens"] for r in rows for s in r["samples"]]
    assert metrics["mean_generated_tokens"] == pytest.approx(sum(tokens) / 40)
    assert metrics["latency_per_example_s"] > 0 and metrics["throughput_examples_per_s"] > 0
    for r in rows:  # the grade follows from the extraction
        s = r["samples"][0]
        assert s["correct_strict"] == (s["pred_strict"] is not None and int(s["pred_strict"]) == int(r["answer"]))


def test_grade_sample_strict_and_flexible():
    from mentalese.decoding.loop import DecodeResult
    from mentalese.evaluation.harness import grade_sample
    from mentalese.tasks.example import Example

    ex = Example(question="3+4", answer="7", cot_steps=["3+4=7"])
    spec = get_benchmark("chain")
    right = grade_sample(DecodeResult([], "3+4=7\nThe answer is: 7", 0, 0, "eos", 0.0), ex, spec)
    assert right["correct_strict"] and right["correct_flexible"]
    no_marker = grade_sample(DecodeResult([], "3+4=7", 0, 0, "length", 0.0), ex, spec)
    assert no_marker["pred_strict"] is None and not no_marker["correct_strict"]
    assert no_marker["correct_flexible"]  # the last number is the answer


def test_sampling_gives_pass_at_k_and_majority(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    cfg = DecodeConfig(max_new_tokens=40, do_sample=True, temperature=1.0, seed=1)
    m = evaluate(model, tok, examples[:10], get_benchmark("chain"), cfg, num_samples=4)
    assert m["num_samples"] == 4
    assert m["pass@1"] == pytest.approx(m["accuracy"])  # pass@1 is the mean per-sample accuracy
    assert m["pass@1"] <= m["pass@2"] <= m["pass@4"]
    assert 0 <= m["maj@4"] <= 1


def test_num_samples_needs_sampling(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    with pytest.raises(MentaleseError, match="needs sampling"):
        evaluate(model, tok, examples, get_benchmark("chain"), DecodeConfig(), num_samples=2)


def test_run_eval_on_a_local_benchmark_file(tiny_chain_run, tmp_path):
    cfg = EvalConfig(model=str(tiny_chain_run / "model"), benchmark="gsm8k", limit=3, output_dir=str(tmp_path),
                     decode=DecodeConfig(max_new_tokens=8), dtype="float32", device="cpu")
    metrics = run_eval(cfg, progress=False)
    assert metrics["num_examples"] == 3 and metrics["benchmark"] == "gsm8k"
    assert (tmp_path / "config.yaml").is_file()


@pytest.mark.parametrize("kwargs, message", [
    ({"num_samples": 0}, "num_samples"),
    ({"limit": 0}, "limit"),
])
def test_bad_eval_config(kwargs, message):
    with pytest.raises(MentaleseError, match=message):
        EvalConfig(model="x", **kwargs)


def test_run_eval_needs_a_model():
    with pytest.raises(MentaleseError, match="model="):
        run_eval(EvalConfig())
