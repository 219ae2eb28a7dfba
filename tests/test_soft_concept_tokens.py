"""Concept-token math with hand-computed numbers: filtering pipeline, Dirichlet, Gumbel-Softmax, mixing."""

import math

import pytest
import torch
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from mentalese.decoding.concept_tokens import (
    SparseDistribution,
    concept_token_embedding,
    dirichlet_resample,
    entropy,
    filter_distribution,
    gumbel_noise,
    gumbel_softmax_weights,
    keep_top,
    tempered_probs,
)

PROBS = torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]])


def dense(dist: SparseDistribution, vocab: int) -> torch.Tensor:
    return torch.zeros(dist.values.shape[0], vocab).scatter_add(1, dist.indices, dist.values)


def test_temperature_by_hand():
    # softmax([2, 1, 0] / 0.5) = e^[4, 2, 0] / (e^4 + e^2 + 1)
    got = tempered_probs(torch.tensor([[2.0, 1.0, 0.0]]), 0.5)
    z = math.exp(4) + math.exp(2) + 1
    assert torch.allclose(got, torch.tensor([[math.exp(4) / z, math.exp(2) / z, 1 / z]]), atol=1e-6)
    assert tempered_probs(torch.tensor([[0.1, 3.0, 2.9]]), 0).tolist() == [[0.0, 1.0, 0.0]]


def test_top_k_then_top_p_then_min_p_renormalise_after_each():
    d = filter_distribution(PROBS, top_k=4, top_p=1.0, min_p=0.0)
    assert torch.allclose(d.values, torch.tensor([[0.5, 0.2, 0.15, 0.1]]) / 0.95, atol=1e-6)
    # top-p 0.8 after top-k: mass before each = 0, .526, .737, .895 -> the first three stay, / 0.85
    d = filter_distribution(PROBS, top_k=4, top_p=0.8, min_p=0.0)
    assert torch.allclose(d.values, torch.tensor([[0.5, 0.2, 0.15, 0.0]]) / 0.85, atol=1e-6)
    # min-p 0.35 after that: threshold 0.35 * 0.588 = 0.206 drops 0.176 -> [0.5, 0.2] / 0.7
    d = filter_distribution(PROBS, top_k=4, top_p=0.8, min_p=0.35)
    assert torch.allclose(d.values, torch.tensor([[5 / 7, 2 / 7, 0.0, 0.0]]), atol=1e-6)
    assert d.indices[0, :2].tolist() == [0, 1]
    top = keep_top(filter_distribution(PROBS, 0, 1.0, 0.0), 2)
    assert torch.allclose(top.values, torch.tensor([[5 / 7, 2 / 7]]), atol=1e-6)
    assert torch.allclose(keep_top(d, 1).values, torch.ones(1, 1))


def test_top_p_keeps_the_token_that_crosses_the_mass():
    d = filter_distribution(PROBS, top_k=0, top_p=0.6, min_p=0.0)  # 0.5 < 0.6, so the 0.2 token stays
    assert torch.allclose(d.values[0, :3], torch.tensor([5 / 7, 2 / 7, 0.0]), atol=1e-6)
    d = filter_distribution(PROBS, top_k=0, top_p=0.01, min_p=0.0)  # the top token always survives
    assert d.values[0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filtering_matches_transformers_warpers(seed):
    """Renormalising after each filter == transformers' warper chain followed by one softmax."""
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(seed)) * 3
    ours = dense(filter_distribution(tempered_probs(logits, 0.6), 30, 0.95, 0.001), 50)
    chain = LogitsProcessorList([TemperatureLogitsWarper(0.6), TopKLogitsWarper(30), TopPLogitsWarper(0.95),
                                 MinPLogitsWarper(0.001)])
    theirs = torch.softmax(chain(None, logits.clone()), dim=-1)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_entropy_nats_and_normalised():
    p = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    assert entropy(p).item() == pytest.approx(math.log(2))
    assert entropy(p, normalised=True).item() == pytest.approx(math.log(2) / math.log(4))
    assert entropy(torch.tensor([[1.0, 0.0]])).item() == 0.0


def test_concept_token_is_the_weighted_sum_of_input_embeddings():
    embed = torch.nn.Embedding(4, 2)
    with torch.no_grad():
        embed.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [5.0, 5.0]]))
    dist = SparseDistribution(torch.tensor([[0.75, 0.25, 0.0]]), torch.tensor([[2, 1, 3]]))
    assert torch.allclose(concept_token_embedding(dist, embed), torch.tensor([[1.5, 1.75]]))


def test_dirichlet_samples_only_the_support_and_is_seeded():
    dist = filter_distribution(PROBS, top_k=4, top_p=0.8, min_p=0.0)  # support: 3 of 4 entries
    draws = [dirichlet_resample(dist, 4.0, torch.Generator().manual_seed(s)) for s in range(200)]
    for d in draws[:20]:
        assert torch.isclose(d.values.sum(), torch.tensor(1.0))
        assert set(d.indices[0, d.values[0] > 0].tolist()) <= {0, 1, 2}
        assert (d.values[0, :-1] >= d.values[0, 1:]).all()  # re-sorted
    again = dirichlet_resample(dist, 4.0, torch.Generator().manual_seed(0))
    assert torch.equal(again.values, draws[0].values) and torch.equal(again.indices, draws[0].indices)
    assert not torch.equal(draws[0].values, draws[1].values)
    # E[Dir(gamma p)] = p: the average draw is close to p
    mean = torch.stack([dense(d, 5)[0] for d in draws]).mean(0)
    assert torch.allclose(mean, dense(dist, 5)[0], atol=0.05)
    # a large gamma concentrates on p
    tight = dirichlet_resample(dist, 1e5, torch.Generator().manual_seed(0))
    assert torch.allclose(dense(tight, 5), dense(dist, 5), atol=0.01)


def test_gumbel_token_is_argmax_of_log_w_plus_noise():
    dist = SparseDistribution(torch.tensor([[0.6, 0.3, 0.1, 0.0]]), torch.tensor([[7, 3, 9, 1]]))
    noise = gumbel_noise(dist.values.shape, torch.Generator().manual_seed(0), torch.device("cpu"))
    again = gumbel_noise(dist.values.shape, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(noise, again)
    weights, token = gumbel_softmax_weights(dist, 0.5, noise)
    scores = [math.log(w) + g if w > 0 else -math.inf for w, g in zip(dist.values[0].tolist(), noise[0].tolist())]
    best = max(range(4), key=lambda j: scores[j])
    assert token.item() == [7, 3, 9, 1][best]
    finite = [s for s in scores if s > -math.inf]
    z = sum(math.exp(s / 0.5) for s in finite)
    assert weights.values[0].tolist() == pytest.approx([math.exp(s / 0.5) / z for s in finite] + [0.0], abs=1e-6)


def test_gumbel_max_samples_from_w_and_never_picks_zero_weight():
    dist = SparseDistribution(torch.tensor([[0.6, 0.3, 0.1, 0.0]]).repeat(20000, 1),
                              torch.tensor([[0, 1, 2, 3]]).repeat(20000, 1))
    noise = gumbel_noise(dist.values.shape, torch.Generator().manual_seed(1), torch.device("cpu"))
    _, tokens = gumbel_softmax_weights(dist, 0.5, noise)
    freq = torch.bincount(tokens, minlength=4).float() / 20000
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1, 0.0]), atol=0.015)
    assert freq[3] == 0
