"""Concept tokens: turning one step's next-token distribution into a soft input embedding.

Pure functions on a compact [B, K] view of the distribution (the K = top_k most likely tokens),
so a step costs one softmax, one `topk` and a gather of K embedding rows; no full-vocabulary sort
unless top_k is off (0).

    probs    = softmax(logits / T)                                  full vocabulary, [B, V]
    filtered = top-k -> top-p -> min-p, renormalised after each     [B, K] values + indices
    weights  = the top max_topk of `filtered`, renormalised          [B, M]
    concept  = sum_i weights_i * E[idx_i]                            [B, d]

`dirichlet_resample` (Dir(gamma * p) over the support, before the max_topk cut) and
`gumbel_softmax_weights` (after the cut) are the stochastic variants of Wu et al. (2508.03440).

Top-p keeps token i while the mass strictly before it is < top_p (transformers' `TopPLogitsWarper`
rule; the official SGLang code keeps it while that mass is <= top_p: they differ only on exact ties).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_TINY = 1e-30


@dataclass
class SparseDistribution:
    """A distribution kept on a few indices: `values[b, j]` is the probability of token `indices[b, j]`.

    Entries are sorted by probability (largest first); dropped entries have value 0.
    """

    values: torch.Tensor  # [B, K] float32
    indices: torch.Tensor  # [B, K] long

    @property
    def top1(self) -> torch.Tensor:
        return self.indices[:, 0]


def tempered_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the full vocabulary; T = 0 gives the one-hot argmax."""
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    return torch.softmax(logits / temperature, dim=-1)


def entropy(probs: torch.Tensor, normalised: bool = False) -> torch.Tensor:
    """-sum p ln p per row, in nats; divided by ln |V| when `normalised`."""
    h = -(probs * torch.log(probs.clamp_min(_TINY))).sum(-1)
    return h / math.log(probs.shape[-1]) if normalised else h


def _renormalise(values: torch.Tensor) -> torch.Tensor:
    return values / values.sum(-1, keepdim=True)  # the top entry is always kept, so the sum is > 0


def filter_distribution(probs: torch.Tensor, top_k: int, top_p: float, min_p: float) -> SparseDistribution:
    """Top-k, then top-p, then min-p on a [B, V] distribution, renormalising after each step.

    The most likely token always survives, so every row keeps at least one entry. min-p compares
    with the largest entry, so it gives the same answer before or after renormalising: one final
    renormalisation covers top-p and min-p.
    """
    k = probs.shape[-1] if top_k <= 0 else min(top_k, probs.shape[-1])
    values, indices = torch.topk(probs, k, dim=-1)  # sorted, largest first
    values = _renormalise(values)
    if top_p < 1:  # keep while the mass strictly before an entry is < top_p (the first always)
        values = values * ((values.cumsum(-1) - values) < top_p)
    if min_p > 0:
        values = values * (values >= min_p * values[:, :1])
    if top_p < 1 or min_p > 0:
        values = _renormalise(values)
    return SparseDistribution(values, indices)


def keep_top(dist: SparseDistribution, max_topk: int) -> SparseDistribution:
    """The `max_topk` largest entries, renormalised (entries must already be sorted)."""
    m = min(max_topk, dist.values.shape[-1])
    return SparseDistribution(_renormalise(dist.values[:, :m]), dist.indices[:, :m])


def sort_entries(dist: SparseDistribution) -> SparseDistribution:
    values, order = dist.values.sort(dim=-1, descending=True)
    return SparseDistribution(values, dist.indices.gather(-1, order))


def dirichlet_resample(dist: SparseDistribution, gamma: float, generator: torch.Generator | None) -> SparseDistribution:
    """p' ~ Dir(gamma * p) on the support of p (zero entries stay zero), re-sorted.

    Sampled as independent Gamma(gamma * p_i, 1) draws normalised to sum 1. A row whose draws all
    underflow to 0 keeps p.
    """
    support = dist.values > 0
    concentration = torch.where(support, gamma * dist.values, torch.ones_like(dist.values))
    draws = torch._standard_gamma(concentration, generator=generator) * support
    total = draws.sum(-1, keepdim=True)
    values = torch.where(total > 0, draws / total.clamp_min(_TINY), dist.values)
    return sort_entries(SparseDistribution(values, dist.indices))


def gumbel_noise(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard Gumbel(0, 1) samples, -log(-log U), drawn from `generator`."""
    u = torch.rand(shape, generator=generator, device=device).clamp(1e-20, 1 - 1e-7)
    return -torch.log(-torch.log(u))


def gumbel_softmax_weights(
    dist: SparseDistribution, tau: float, noise: torch.Tensor
) -> tuple[SparseDistribution, torch.Tensor]:
    """w' = softmax((log w + g) / tau) over the kept entries, and the token argmax(log w + g).

    By the Gumbel-max trick the token is an exact sample from w, whatever tau. Zero-weight entries
    (log 0 = -inf) keep weight 0 and are never chosen. Entries come back in their input order.
    """
    scores = torch.where(dist.values > 0, torch.log(dist.values.clamp_min(_TINY)) + noise,
                         torch.full_like(dist.values, -math.inf))
    token = dist.indices.gather(-1, scores.argmax(-1, keepdim=True)).squeeze(-1)
    return SparseDistribution(torch.softmax(scores / tau, dim=-1), dist.indices), token


def concept_token_embedding(dist: SparseDistribution, embed_tokens) -> torch.Tensor:
    """sum_i w_i * E[idx_i] -> [B, d], with E the model's input embedding module (not the lm_head).

    Calling the module (rather than indexing its weight) keeps models whose embedding module scales
    its output (e.g. Gemma's) right.
    """
    rows = embed_tokens(dist.indices)  # [B, M, d]
    return torch.bmm(dist.values.to(rows.dtype).unsqueeze(1), rows).squeeze(1)
