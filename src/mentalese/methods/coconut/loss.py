"""The Coconut forward: continuous thoughts by n + 1 KV-cached passes, and its CE loss.

    out = coconut_forward(lm, input_ids, attention_mask, labels, latent_id)

Semantics of the official `Coconut.forward`: the input embedding at each <|latent|> position is the
last-layer hidden state (after the final norm) at the position before it, so thought j can only be
computed after thought j-1. With n = the most thoughts of any row, the batch takes n + 1 passes
through one KV cache: the prefix up to the first thought, one position per thought, then the rest.
Gradients flow through every thought (no detach), as in the official code.

Layout: the official one (data.py), question + <|start-latent|> + <|latent|>*k + <|end-latent|> +
remaining steps + answer, any padding. Each row's thoughts must be contiguous; rows are shifted
internally so that their first thoughts share a column (the official collator pads that way, then
nothing moves), and logits come back in the input's layout. Unlike the official code, which takes
position ids from the collator and masks only padding that it put there itself, the attention mask and
position ids (default: each row's real tokens counted from 0) go into every pass, so a row's loss does
not depend on the rest of its batch (tests/test_coconut_forward.py).

`continuous=False` is "pause as thought": the <|latent|> embeddings stay (a learned pause token) and
one ordinary forward pass does it all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from mentalese.errors import MentaleseError
from mentalese.methods.codi.loss import token_ce
from mentalese.methods.formatting import IGNORE_INDEX
from mentalese.models.cache_kwargs import cache_kwargs


@dataclass
class CoconutOutput:
    loss: torch.Tensor  # mean next-token CE over every labelled token of the batch (official)
    logits: torch.Tensor  # [B, T, V] in the input's layout
    thought_hidden: torch.Tensor  # [B, n, d] last hidden state that became thought j (zeros past a row's k)
    thought_logits: torch.Tensor  # [B, n, V] LM output at the position before thought j
    thought_mask: torch.Tensor  # [B, n] bool: thought j exists in the row
    loss_per_example: torch.Tensor  # [B] mean CE over each row's labelled tokens
    answer_ce: torch.Tensor | None = None  # the CE part of `loss` when a step loss is added (CoconutModel)
    step_ce: torch.Tensor | None = None  # the unweighted step supervision loss


def latent_spans(input_ids: torch.Tensor, latent_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first latent column, number of latents) per row; refuses rows whose latents are not contiguous."""
    is_latent = input_ids == latent_id
    counts = is_latent.sum(dim=1)
    first = torch.where(counts > 0, is_latent.float().argmax(dim=1), 0)
    cols = torch.arange(input_ids.shape[1], device=input_ids.device)
    span = (cols >= first[:, None]) & (cols < (first + counts)[:, None])
    if not torch.equal(span, is_latent):
        bad = (span != is_latent).any(dim=1).nonzero()[0].item()
        raise MentaleseError(f"row {bad}: the <|latent|> tokens must be contiguous (one run of thoughts per row)")
    return first, counts


def _shift_rows(t: torch.Tensor, shifts: torch.Tensor, width: int, fill) -> torch.Tensor:
    out = t.new_full((t.shape[0], width, *t.shape[2:]), fill)
    for b, s in enumerate(shifts.tolist()):
        out[b, s: s + t.shape[1]] = t[b]
    return out


def coconut_forward(lm, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None,
                    latent_id: int, position_ids: torch.Tensor | None = None, continuous: bool = True
                    ) -> CoconutOutput:
    """Logits, loss and thoughts of a batch in the official layout (module docstring)."""
    if position_ids is None:
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    if labels is None:
        labels = torch.full_like(input_ids, IGNORE_INDEX)
    first, counts = latent_spans(input_ids, latent_id)
    B, T = input_ids.shape
    n = int(counts.max())
    if n and int(first[counts > 0].min()) == 0:
        raise MentaleseError("a <|latent|> token cannot open a sequence: a thought is the hidden state of the "
                             "position before it")
    aligned = int(first[counts > 0].max()) if n else 0
    shifts = torch.where(counts > 0, aligned - first, 0)
    W = T + int(shifts.max())
    if W != T:
        input_ids, attention_mask, position_ids, labels = (
            _shift_rows(x, shifts, W, f) for x, f in ((input_ids, 0), (attention_mask, 0), (position_ids, 0),
                                                       (labels, IGNORE_INDEX)))
    embed = lm.get_input_embeddings()
    embeds = embed(input_ids)
    is_latent = input_ids == latent_id

    if not continuous or n == 0:
        out = lm(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                 output_hidden_states=True)
        logits, hidden = out.logits, out.hidden_states[-1]
        before = (aligned - 1 + torch.arange(n, device=logits.device)).clamp(min=0)
        thought_hidden, thought_logits = hidden[:, before], logits[:, before]
    else:
        cache = DynamicCache(config=lm.config)
        kw = dict(**cache_kwargs(lm, cache), use_cache=True, output_hidden_states=True)
        out = lm(inputs_embeds=embeds[:, :aligned], attention_mask=attention_mask[:, :aligned],
                 position_ids=position_ids[:, :aligned], **kw)
        chunks, hiddens, heads = [out.logits], [], []
        for j in range(n):  # pass j + 1 computes column aligned + j, whose input is thought j where a row has it
            prev_hidden, prev_logits = out.hidden_states[-1][:, -1], out.logits[:, -1]
            hiddens.append(prev_hidden)
            heads.append(prev_logits)
            col = aligned + j
            x = torch.where(is_latent[:, col, None], prev_hidden.to(embeds.dtype), embeds[:, col])
            end = col + 1 if j < n - 1 else W  # the last pass also takes everything after the thoughts
            x = torch.cat([x[:, None], embeds[:, col + 1: end]], dim=1)
            out = lm(inputs_embeds=x, attention_mask=attention_mask[:, :end], position_ids=position_ids[:, col:end],
                     **kw)
            chunks.append(out.logits)
        logits = torch.cat(chunks, dim=1)
        thought_hidden, thought_logits = torch.stack(hiddens, dim=1), torch.stack(heads, dim=1)

    sums, tokens = token_ce(logits, labels)
    loss = sums.sum() / tokens.sum().clamp(min=1)
    if W != T:  # back to the input's layout
        index = shifts[:, None] + torch.arange(T, device=logits.device)
        logits = logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))
    thought_mask = torch.arange(n, device=counts.device)[None] < counts[:, None]
    keep = thought_mask[..., None].to(thought_hidden.dtype)
    return CoconutOutput(loss=loss, logits=logits, thought_hidden=thought_hidden * keep,
                         thought_logits=thought_logits * keep.to(thought_logits.dtype), thought_mask=thought_mask,
                         loss_per_example=sums / tokens.clamp(min=1))
