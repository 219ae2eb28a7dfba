"""Batched teacher-forced scoring: log p(target | context) summed over the target tokens.

    scores = sequence_logprobs(model, contexts, targets, batch_size=32)

Rows are right-padded (so positions count from 0 in every row) and sorted by length so similar
rows share a batch; the log-softmax is taken only over the positions that predict target tokens.
"""

from __future__ import annotations

from typing import Sequence

import torch

from mentalese.decoding.loop import context_length
from mentalese.errors import MentaleseError


@torch.no_grad()
def sequence_logprobs(model, contexts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                      batch_size: int = 32, pad_id: int = 0) -> list[float]:
    """Sum of log-probs of each target given its context (float32 accumulation), in input order."""
    if len(contexts) != len(targets):
        raise MentaleseError(f"{len(contexts)} contexts but {len(targets)} targets")
    ctx_len = context_length(model)
    for i, (c, t) in enumerate(zip(contexts, targets)):
        if not c or not t:
            raise MentaleseError(f"row {i}: context and target must be non-empty")
        if ctx_len is not None and len(c) + len(t) > ctx_len:
            raise MentaleseError(f"row {i}: {len(c) + len(t)} tokens exceed the model's context {ctx_len}")
    device = model.get_input_embeddings().weight.device
    order = sorted(range(len(contexts)), key=lambda i: -(len(contexts[i]) + len(targets[i])))
    out = [0.0] * len(contexts)
    was_training = model.training
    model.eval()
    try:
        for b in range(0, len(order), batch_size):
            batch = order[b:b + batch_size]
            rows = [list(contexts[i]) + list(targets[i]) for i in batch]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, r in enumerate(rows):
                ids[j, :len(r)] = torch.tensor(r)
                mask[j, :len(r)] = 1
            first = min(len(contexts[i]) for i in batch) - 1  # earliest position predicting a target token
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, first:-1].float()
            logp = torch.log_softmax(logits, dim=-1)
            nxt = ids[:, first + 1:].to(device)
            token_lp = logp.gather(-1, nxt[..., None]).squeeze(-1)  # [B, width - 1 - first]
            for j, i in enumerate(batch):
                start = len(contexts[i]) - 1 - first
                out[i] = float(token_lp[j, start:start + len(targets[i])].sum())
    finally:
        model.train(was_training)
    return out
