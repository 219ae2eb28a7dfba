"""Single-threadedness tools: JS divergence, ROUGE-L, logit lens, the per-step probe and the commands."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mentalese.analysis.single_thread import js_divergence, logit_lens, probe_soft_thinking, rouge_l, top1_share
from mentalese.analysis.soft_commands import pass_at_k_curve
from mentalese.commands.cli import main
from mentalese.decoding.soft_thinking import SoftThinkingConfig
from mentalese.errors import MentaleseError
from mentalese.evaluation.metrics import pass_at_k
from mentalese.models import build_tiny_model, char_tokenizer, load_model_and_tokenizer


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = char_tokenizer(extra_tokens=["<think>", "</think>"])
    return build_tiny_model("llama", tok, tmp_path_factory.mktemp("tiny_think") / "m", initializer_range=0.3)


@pytest.fixture(scope="module")
def mt(model_dir):
    return load_model_and_tokenizer(model_dir, dtype="float32", device="cpu")


def test_js_divergence_by_hand():
    assert js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(math.log(2))
    assert js_divergence(torch.tensor([0.3, 0.7]), torch.tensor([0.3, 0.7])).item() == pytest.approx(0.0, abs=1e-7)
    # p = (.5, .5), q = (1, 0), m = (.75, .25): (KL(p||m) + KL(q||m)) / 2 = (0.143841 + 0.287682) / 2
    assert js_divergence(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])).item() == pytest.approx(0.215762, abs=1e-5)


def test_rouge_l_by_hand():
    assert rouge_l("ABCBDAB", "BDCABA") == pytest.approx(2 * (4 / 7) * (4 / 6) / (4 / 7 + 4 / 6))  # LCS 4
    assert rouge_l([1, 2, 3], [1, 2, 3]) == 1.0
    assert rouge_l([1, 2], [3, 4]) == 0.0 and rouge_l([], [1]) == 0.0


def test_top1_share_counts_overlaps():
    mix = torch.arange(20.0)  # top-10: 10..19
    top1 = torch.arange(20.0)  # top-5: 15..19, all in the mixture's top-10
    top2 = -torch.arange(20.0)  # top-5: 0..4, none
    assert top1_share(mix, top1, top2) == (1.0, 0.0)


def test_pass_at_k_curve_uses_the_unbiased_estimator():
    assert pass_at_k_curve([2, 0], 4) == [(pass_at_k(4, 2, k) + 0) / 2 for k in range(1, 5)]


def test_logit_lens_last_layer_is_the_model_output(mt):
    model, tok = mt
    out = model(input_ids=torch.tensor([tok("hello<think>")["input_ids"]]), output_hidden_states=True)
    lens = logit_lens(model, out.hidden_states)
    assert len(lens) == model.config.num_hidden_layers + 1
    assert torch.allclose(lens[-1], out.logits[:, -1], atol=1e-5)
    assert not torch.allclose(lens[1], out.logits[:, -1], atol=1e-2)


def test_probe_greedy_soft_input_equals_top1_and_pure_mixture_is_all_top1(mt):
    model, tok = mt
    ids = tok("x = 12<think>")["input_ids"]
    greedy = SoftThinkingConfig(temperature=0)  # concept token = one-hot top-1
    probes = probe_soft_thinking(model, ids, greedy, stop_ids=[], max_steps=5, mix_weights=(1.0, 0.0))
    assert len(probes) == 5
    for p in probes:
        assert p.js_soft_top1 == pytest.approx(0.0, abs=1e-6)
        assert 0 <= p.js_soft_top2 <= math.log(2) + 1e-6 and p.js_soft_top2 == pytest.approx(p.js_top1_top2, abs=1e-5)
        assert p.overlap_top1 == [1.0] * 3  # the mixture is the top-1 input itself, at every layer
    soft = probe_soft_thinking(model, ids, SoftThinkingConfig(temperature=1.0), stop_ids=[], max_steps=5)
    assert any(p.js_soft_top1 > 1e-4 for p in soft)


def test_commands_write_json_and_png(model_dir, tmp_path):
    common = [f"model={model_dir}", "limit=3", "max_new_tokens=8", "num_samples=2", f"output_dir={tmp_path}",
              "task_options={num_steps: 2, num_examples: 20}"]
    for command, name in [("soft-js", "js"), ("soft-logit-lens", "logit_lens"), ("soft-rouge", "rouge"),
                          ("soft-passk", "passk")]:
        assert main(["analyze", command, *common]) == 0
        assert json.loads((tmp_path / f"{name}.json").read_text())
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    passk = json.loads((tmp_path / "passk.json").read_text())
    assert set(passk["pass_at_k"]) == {"sampling", "soft", "dirichlet", "gumbel"}
    assert main(["analyze", "soft-js", "limit=3"]) == 2  # no model: a clear error, exit code 2


def test_eval_with_a_soft_thinking_strategy(model_dir, tmp_path):
    args = ["eval", f"model={model_dir}", "benchmark=chain", "limit=4", "num_samples=2", f"output_dir={tmp_path}",
            "prompt='{question}<think>'", "decode.max_new_tokens=6", "soft_thinking.mode=gumbel",
            "soft_thinking.max_topk=3",
            "task_options={num_steps: 2, num_examples: 20}"]
    assert main(args) == 0
    record = json.loads((tmp_path / "predictions.jsonl").read_text().splitlines()[0])
    assert "thinking_steps" in record["samples"][0]["info"]
    assert main(args[:-1] + ["soft_thinking.top_p=1.5"]) == 2  # invalid setting, before any work


def test_probe_rejects_bad_input(mt):
    model, tok = mt
    with pytest.raises(MentaleseError, match="empty"):
        probe_soft_thinking(model, [], SoftThinkingConfig(), stop_ids=[], max_steps=3)
    with pytest.raises(MentaleseError, match="context"):
        probe_soft_thinking(model, [7] * 600, SoftThinkingConfig(), stop_ids=[], max_steps=3)
    with pytest.raises(MentaleseError, match="mix_weights"):
        probe_soft_thinking(model, [7, 8], SoftThinkingConfig(), stop_ids=[], max_steps=3, mix_weights=(0.9, 0.3))
