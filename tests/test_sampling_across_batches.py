"""Sampling across batches: one generator per decode() call, so batches draw independent samples.

Copies of one prompt in different batches must be different samples (they are what pass@k and
majority vote count), soft thinking's Gumbel / Dirichlet noise must differ between batches, and a
pass@k measured through the harness must match the analytic value of a model whose per-sample
accuracy is known exactly.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from mentalese.decoding import DecodeConfig, decode
from mentalese.decoding.soft_thinking import SoftThinkingConfig, SoftThinkingStrategy
from mentalese.evaluation.harness import evaluate
from mentalese.evaluation.metrics import pass_at_k
from mentalese.models import char_tokenizer
from mentalese.tasks.example import Example
from mentalese.tasks.registry import BenchmarkSpec

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

COPIES, BATCH = 8, 4  # two batches of four copies of one prompt


def tiny_gpt2(tok, seed=0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_layer=2, n_head=4, n_embd=32, n_positions=128,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def mt():
    tok = char_tokenizer(extra_tokens=["<think>", "</think>"])
    return tiny_gpt2(tok), tok


def sample_copies(model, tok, prompt, seed=0, strategy=None, max_new_tokens=12):
    cfg = DecodeConfig(max_new_tokens=max_new_tokens, batch_size=BATCH, seed=seed, do_sample=True, temperature=1.0)
    return [tuple(r.token_ids) for r in decode(model, tok, [prompt] * COPIES, cfg, strategy)]


def test_copies_in_different_batches_are_different_samples(mt):
    """A near-uniform next token over ~87 ids, 12 steps: two equal samples have odds ~1e-23 (none but a
    repeated generator gives one). Per-batch seeding gave 4 distinct samples, batch 2 a copy of batch 1."""
    model, tok = mt
    samples = sample_copies(model, tok, "x = 1 + 2 ?")
    assert len(set(samples)) == COPIES, samples
    assert sample_copies(model, tok, "x = 1 + 2 ?") == samples  # same seed, same batch size: same samples
    assert sample_copies(model, tok, "x = 1 + 2 ?", seed=1) != samples


class FirstStepConcepts(SoftThinkingStrategy):
    """Soft thinking that keeps each batch's step-0 input embeddings (the concept tokens, noise included)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_embeds: list[torch.Tensor] = []

    def step(self, ctx):
        decision = super().step(ctx)
        if ctx.step == 0:
            self.first_embeds.append(decision.embeds.clone())
        return decision


@pytest.mark.parametrize("mode", ["dirichlet", "gumbel", "vanilla"])
def test_soft_thinking_noise_differs_between_batches(mt, mode):
    """Every copy of a prompt that ends inside <think> sees the same logits at step 0, so its concept token
    differs from another copy's only through the noise: 8 different ones in the noisy modes (all equal in
    vanilla, the control). Per-batch seeding fed row r of batch 2 the noise of row r of batch 1."""
    model, tok = mt
    strategy = FirstStepConcepts(SoftThinkingConfig(mode=mode), tok)
    sample_copies(model, tok, "a<think>", strategy=strategy, max_new_tokens=2)
    concepts = torch.cat(strategy.first_embeds)
    assert concepts.shape[0] == COPIES
    pairs = [(i, j) for i in range(COPIES) for j in range(i + 1, COPIES)]
    same = [(i, j) for i, j in pairs if torch.equal(concepts[i], concepts[j])]
    if mode == "vanilla":
        assert len(same) == len(pairs)
    else:
        assert same == []


# --- pass@k on a model whose per-sample accuracy is known --------------------------------------

N_EXAMPLES, N_SAMPLES = 400, 8  # two harness shards of <= 256 examples; 8 samples in batches of 4


def known_accuracy_model(tok) -> GPT2LMHeadModel:
    """A GPT-2 whose next-token distribution is the same after any prompt: the final layer norm outputs its
    bias alone (weight 0), so logits = lm_head(bias). The digits share almost all the mass, unevenly."""
    model = tiny_gpt2(tok)
    digits = tok.convert_tokens_to_ids(list("0123456789"))
    logits = torch.full((len(tok),), -9.0)
    logits[digits] = torch.linspace(-0.5, 0.5, 10)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.lm_head.weight[:, 0] = logits  # tied with the input embeddings, which no longer matter
    return model


def first_token_probability(model, tok, prompt: str, answer: str) -> float:
    """p = the model's own softmax probability, after `prompt`, of the answer's token."""
    ids = torch.tensor([tok(prompt)["input_ids"]])
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].double(), dim=-1)
    return float(probs[tok.convert_tokens_to_ids(answer)])


def binomial_pmf(n: int, c: int, p: float) -> float:
    return math.comb(n, c) * p**c * (1 - p) ** (n - c)


def test_pass_at_k_matches_the_analytic_value(mt):
    """With independent samples the unbiased estimator has mean 1 - (1 - p)^k per example; its exact variance
    over c ~ Binomial(n, p) sets a 4-sigma tolerance on the mean over examples. Per-batch seeding drew the
    same four tokens in every batch: at most 4 of the 10 answers were ever found, pass@8 <= 0.4 (here ~0.57)."""
    _, tok = mt
    model = known_accuracy_model(tok)
    spec = BenchmarkSpec(name="first_digit", version=1, description="answer = the first generated token",
                         prompt="{question}=", extraction="text", grader="exact")
    examples = [Example(question=f"q{i}", answer=str(i % 10), id=str(i)) for i in range(N_EXAMPLES)]
    p = [first_token_probability(model, tok, f"q{i}=", ex.answer) for i, ex in enumerate(examples)]
    assert 0.05 < min(p) and max(p) < 0.17 and sum(p[:10]) > 0.99  # the construction did what it says
    cfg = DecodeConfig(max_new_tokens=1, batch_size=BATCH, do_sample=True, temperature=1.0, seed=0)
    metrics = evaluate(model, tok, examples, spec, cfg, num_samples=N_SAMPLES)
    for k in (1, 2, 4, 8):
        expected = sum(1 - (1 - pi) ** k for pi in p) / N_EXAMPLES
        variance = sum(binomial_pmf(N_SAMPLES, c, pi) * (pass_at_k(N_SAMPLES, c, k) - (1 - (1 - pi) ** k)) ** 2
                       for pi in p for c in range(N_SAMPLES + 1))
        sigma = math.sqrt(variance) / N_EXAMPLES
        assert abs(metrics[f"pass@{k}"] - expected) < 4 * sigma, (k, metrics[f"pass@{k}"], expected, sigma)
