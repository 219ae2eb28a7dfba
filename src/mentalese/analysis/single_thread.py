"""Evidence for "LLMs are single-threaded reasoners" (Wu et al. 2508.03440), measured on any HF model.

- `js_divergence`: Jensen-Shannon divergence of next-token distributions (natural log, max ln 2).
- `probe_soft_thinking`: follows a vanilla soft-thinking trace and, at every thinking step, also
  runs the one-hot top-1 input, the one-hot top-2 input and a two-token mixture (default 0.6/0.4)
  from a branch of the KV cache (one extra forward of 4 rows per step). It records JS(soft, top1),
  JS(soft, top2), JS(top1, top2) and, per layer, the logit lens of the mixture.
- Logit lens: each layer's hidden state through the final norm and lm_head (the last layer's state
  already has the norm applied in transformers). At every layer, overlap of the mixture's top-10
  with each pure input's top-5 at that same layer; share of top-1 = o1 / (o1 + o2), over all steps
  and over the "divergent" steps where the two pure inputs predict different next tokens.
- `rouge_l`: LCS-based F-measure between two token sequences (the soft trace vs the greedy trace).

The paper's logit-lens and ROUGE-L code was never released; these follow its text.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from mentalese.decoding.concept_tokens import concept_token_embedding, filter_distribution, keep_top, tempered_probs
from mentalese.decoding.loop import context_length
from mentalese.decoding.soft_thinking import SoftThinkingConfig
from mentalese.errors import MentaleseError
from mentalese.models.cache_kwargs import cache_kwargs


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """JS(p, q) = (KL(p || m) + KL(q || m)) / 2, m = (p + q) / 2, natural log, over the last dim."""
    m = (p + q) / 2

    def kl(a: torch.Tensor) -> torch.Tensor:
        return torch.where(a > 0, a * (torch.log(a.clamp_min(1e-30)) - torch.log(m.clamp_min(1e-30))), 0.0).sum(-1)

    return ((kl(p) + kl(q)) / 2).clamp_min(0.0)


def rouge_l(candidate: Sequence, reference: Sequence) -> float:
    """ROUGE-L F1 = 2PR / (P + R), with P = LCS / |candidate|, R = LCS / |reference|; 0 if either is empty."""
    if not candidate or not reference:
        return 0.0
    previous = [0] * (len(reference) + 1)
    for c in candidate:
        current = [0]
        for j, r in enumerate(reference):
            current.append(previous[j] + 1 if c == r else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(candidate), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def final_norm(model) -> torch.nn.Module:
    """The norm applied before the lm_head (ln_f for GPT-2, norm for Llama/Qwen/Mistral...)."""
    base = model.base_model
    for name in ("norm", "ln_f", "final_layernorm", "final_layer_norm"):
        module = getattr(base, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise MentaleseError(f"cannot find the final norm of {type(base).__name__} for the logit lens")


def logit_lens(model, hidden_states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer (embeddings first), [N, V] logits of the last position."""
    norm, head = final_norm(model), model.get_output_embeddings()
    last = len(hidden_states) - 1
    return [head(h[:, -1] if i == last else norm(h[:, -1])).float() for i, h in enumerate(hidden_states)]


def top1_share(mix_logits: torch.Tensor, top1_logits: torch.Tensor, top2_logits: torch.Tensor,
               mix_k: int = 10, pure_k: int = 5) -> tuple[float, float]:
    """(|top-mix_k(mix) ∩ top-pure_k(top1)|, same for top2) / pure_k, for one row."""
    mix = set(mix_logits.topk(mix_k).indices.tolist())
    o1 = len(mix & set(top1_logits.topk(pure_k).indices.tolist())) / pure_k
    o2 = len(mix & set(top2_logits.topk(pure_k).indices.tolist())) / pure_k
    return o1, o2


@dataclass
class StepProbe:
    js_soft_top1: float
    js_soft_top2: float
    js_top1_top2: float
    divergent: bool = False  # the top-1 and top-2 inputs predict different next tokens
    overlap_top1: list[float] = field(default_factory=list)  # per layer
    overlap_top2: list[float] = field(default_factory=list)


@torch.no_grad()
def probe_soft_thinking(model, prompt_ids: list[int], soft: SoftThinkingConfig, stop_ids: Sequence[int],
                        max_steps: int, mix_weights: tuple[float, float] = (0.6, 0.4),
                        js_temperature: float = 1.0, lens_ks: tuple[int, int] = (10, 5)) -> list[StepProbe]:
    """Probe every thinking step of one prompt (which must end inside `<think>`); see the module docstring.

    The trace itself is vanilla soft thinking (concept tokens, argmax recorded) until a stop id
    (the closing tag, eos) is recorded or `max_steps` is reached. `lens_ks` = (k of the mixture's
    top tokens, k of each pure input's top tokens), (10, 5) as in the paper's text.
    """
    if not prompt_ids:
        raise MentaleseError("empty prompt")
    if abs(sum(mix_weights) - 1) > 1e-6 or min(mix_weights) < 0:
        raise MentaleseError(f"mix_weights must be two non-negative weights summing to 1, got {mix_weights}")
    limit = context_length(model)
    if limit is not None:
        if len(prompt_ids) >= limit:
            raise MentaleseError(f"prompt has {len(prompt_ids)} tokens, the model's context is {limit}")
        max_steps = min(max_steps, limit - len(prompt_ids))
    device = model.get_input_embeddings().weight.device
    embed = model.get_input_embeddings()
    ids = torch.tensor([prompt_ids], device=device)
    cache = _new_cache(model)
    out = model(input_ids=ids, **cache_kwargs(model, cache), use_cache=True)
    logits, position, probes = out.logits[:, -1].float(), len(prompt_ids), []
    for _ in range(max_steps):
        probs = tempered_probs(logits, soft.temperature)
        dist = keep_top(filter_distribution(probs, soft.top_k, soft.top_p, soft.min_p), soft.max_topk)
        top2 = logits.topk(2, dim=-1).indices[0]
        e1, e2 = embed(top2[:1]), embed(top2[1:])
        inputs = torch.cat([concept_token_embedding(dist, embed), e1, e2, mix_weights[0] * e1 + mix_weights[1] * e2])
        branch = copy.deepcopy(cache)
        branch.batch_repeat_interleave(4)
        out = model(inputs_embeds=inputs[:, None], **cache_kwargs(model, branch), use_cache=True,
                    output_hidden_states=True, position_ids=torch.full((4, 1), position, device=device))
        nxt = torch.softmax(out.logits[:, -1].float() / js_temperature, dim=-1)
        probe = StepProbe(float(js_divergence(nxt[0], nxt[1])), float(js_divergence(nxt[0], nxt[2])),
                          float(js_divergence(nxt[1], nxt[2])), bool(nxt[1].argmax() != nxt[2].argmax()))
        for layer_logits in logit_lens(model, out.hidden_states):
            o1, o2 = top1_share(layer_logits[3], layer_logits[1], layer_logits[2], *lens_ks)
            probe.overlap_top1.append(o1)
            probe.overlap_top2.append(o2)
        probes.append(probe)
        if int(dist.top1[0]) in stop_ids:
            break
        branch.batch_select_indices(torch.tensor([0], device=device))  # continue the soft trace
        cache, logits, position = branch, out.logits[:1, -1].float(), position + 1
    return probes


def _new_cache(model):
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def summarise_probes(probes: list[list[StepProbe]]) -> dict:
    """Means over every probed step of every prompt, per-step-index means, and per-layer lens shares."""
    steps = [p for row in probes for p in row]
    if not steps:
        raise MentaleseError("no thinking steps were probed")
    keys = ("js_soft_top1", "js_soft_top2", "js_top1_top2")
    mean = {k: sum(getattr(p, k) for p in steps) / len(steps) for k in keys}
    longest = max(len(row) for row in probes)
    by_step = {k: [_mean([getattr(row[i], k) for row in probes if i < len(row)]) for i in range(longest)]
               for k in keys}
    layers = len(steps[0].overlap_top1)
    o1 = [_mean([p.overlap_top1[l] for p in steps]) for l in range(layers)]
    o2 = [_mean([p.overlap_top2[l] for p in steps]) for l in range(layers)]
    def share(subset: list[StepProbe]) -> list[float]:
        return [_mean([p.overlap_top1[l] / (p.overlap_top1[l] + p.overlap_top2[l]) for p in subset
                       if p.overlap_top1[l] + p.overlap_top2[l] > 0]) for l in range(layers)]

    divergent = [p for p in steps if p.divergent]
    return {"num_prompts": len(probes), "num_steps": len(steps), "mean": mean,
            "median": {k: sorted(getattr(p, k) for p in steps)[len(steps) // 2] for k in keys},
            "by_step": by_step, "ln2": math.log(2),
            "logit_lens": {"overlap_top1": o1, "overlap_top2": o2, "share_top1": share(steps),
                           "num_divergent_steps": len(divergent), "share_top1_divergent": share(divergent)}}


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")
