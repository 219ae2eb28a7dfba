"""The CODI loss: student CE + teacher CE + hidden-state distillation, from a collated batch.

    L = alpha * L_student + beta * L_kd + gamma * L_teacher (+ delta * L_thought)

- Teacher: ONE forward of question + CoT + answer with every hidden state; its CE is the
  teacher loss and its hidden states, detached, are the distillation targets (the official code
  runs the teacher twice; in eval mode both give the same numbers, see the tests).
- Student: prefill question + <bot>, then `num_latent` single-position steps whose input is the
  projected last hidden state of the previous step, then <eot> + answer, all through one KV cache,
  with the attention mask extended and explicit position ids at every step (the official code
  passes no mask after the prefill, so its losses depend on the batch's padding).
- L_thought (optional, not in CODI; weight `delta`): the LM's output at <bot> and at each continuous
  thought predicts the first token of the matching CoT step's result (`thought_result_ids`), so that
  thought k carries step k's intermediate result. See docs/codi.md.
- L_kd: mean over the L+1 hidden-state entries (embeddings included) of
  loss(h_student[l][pos], h_teacher[l][pos]) / std(h_teacher[l][pos]) (unbiased std over B*d values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from mentalese.errors import MentaleseError
from mentalese.methods.formatting import IGNORE_INDEX
from mentalese.models.cache_kwargs import cache_kwargs


@dataclass
class CODILossOutput:
    loss: torch.Tensor  # the weighted total (scalar, with grad)
    student_ce: torch.Tensor  # mean over the batch's answer tokens
    teacher_ce: torch.Tensor  # mean over the batch's CoT + answer tokens
    distill: torch.Tensor  # L_kd
    thought_ce: torch.Tensor  # L_thought: mean CE of the supervised thought outputs (0 when delta == 0)
    student_ce_per_example: torch.Tensor  # [B] mean over each row's tokens (for tests and analysis)
    teacher_ce_per_example: torch.Tensor  # [B]
    student_hidden: torch.Tensor  # [L+1, B, d] student hidden states at the distilled position
    teacher_hidden: torch.Tensor  # [L+1, B, d] teacher targets (detached)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "smooth_l1",
                      divide_by_std: bool = True) -> torch.Tensor:
    """Mean over layers of loss(student[l], teacher[l]) (/ std(teacher[l])). Inputs: [L+1, B, d]."""
    per_element: dict[str, Callable] = {"smooth_l1": lambda s, t: F.smooth_l1_loss(s, t, beta=1.0),
                                         "l1": F.l1_loss, "l2": F.mse_loss}
    if kind not in per_element:
        raise MentaleseError(f"unknown distillation loss {kind!r}; choose {sorted(per_element)}")
    teacher = teacher.detach()
    losses = []
    for s, t in zip(student.float(), teacher.float()):
        layer = per_element[kind](s, t)
        if divide_by_std:
            layer = layer / t.std()
        losses.append(layer)
    return torch.stack(losses).mean()


def token_ce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token CE summed per row, and the number of labelled tokens per row."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX,
                         reduction="none").view(labels.shape)
    return ce.sum(dim=1), (labels != IGNORE_INDEX).sum(dim=1)


def run_student(lm, projection, batch: dict[str, torch.Tensor], num_latent: int, thought_logits: list | None = None):
    """Prefill question+<bot>, `num_latent` continuous thoughts, then the decoder part. Returns its output.
    `thought_logits`, if given, receives the next-token logits [B, V] at <bot> and at thoughts 1..n-1."""
    mask = batch["student_mask"]
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=lm.config)
    out = lm(input_ids=batch["student_ids"], attention_mask=mask, position_ids=position, **cache_kwargs(lm, cache),
             use_cache=True, output_hidden_states=True, logits_to_keep=1)
    next_pos = position[:, -1] + 1
    for _ in range(num_latent):
        if thought_logits is not None:
            thought_logits.append(out.logits[:, -1])
        hidden = out.hidden_states[-1][:, -1]
        thought = projection(hidden) if projection is not None else hidden
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = lm(inputs_embeds=thought[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                 **cache_kwargs(lm, cache), use_cache=True, output_hidden_states=True, logits_to_keep=1)
        next_pos = next_pos + 1
    dec_ids = batch["decoder_ids"]
    dec_pos = next_pos[:, None] + torch.arange(dec_ids.shape[1], device=dec_ids.device)
    return lm(input_ids=dec_ids, attention_mask=torch.cat([mask, batch["decoder_mask"]], dim=1),
              position_ids=dec_pos, **cache_kwargs(lm, cache), use_cache=True, output_hidden_states=True)


def thought_result_ce(thought_logits: list[torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean CE of the thought outputs against `thought_result_ids` [B, steps] (IGNORE_INDEX where a row has
    no such step or the step has no result); thoughts beyond the CoT's steps are not supervised."""
    if "thought_result_ids" not in batch:
        raise MentaleseError("thought supervision needs `thought_result_ids` in the batch (collate_codi adds them)")
    targets = batch["thought_result_ids"]
    n = min(len(thought_logits), targets.shape[1])
    if n == 0:
        return targets.new_zeros((), dtype=torch.float)
    logits = torch.stack(thought_logits[:n], dim=1).float()
    labels = targets[:, :n]
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def codi_loss(lm, projection, batch: dict[str, torch.Tensor], num_latent: int, alpha: float = 1.0,
              beta: float = 1.0, gamma: float = 1.0, distill_kind: str = "smooth_l1",
              divide_by_std: bool = True, delta: float = 0.0) -> CODILossOutput:
    """CODI's three losses for one collated batch (`collate_codi`); `projection` may be None."""
    if num_latent < 0:
        raise MentaleseError(f"num_latent must be >= 0, got {num_latent}")
    rows = torch.arange(batch["teacher_ids"].shape[0], device=batch["teacher_ids"].device)

    t_mask = batch["teacher_mask"]
    teacher = lm(input_ids=batch["teacher_ids"], attention_mask=t_mask,
                 position_ids=(t_mask.cumsum(-1) - 1).clamp(min=0), output_hidden_states=True)
    t_sum, t_count = token_ce(teacher.logits, batch["teacher_labels"])
    teacher_hidden = torch.stack([h[rows, batch["teacher_distill_pos"]] for h in teacher.hidden_states]).detach()

    thought_logits: list[torch.Tensor] = []
    student = run_student(lm, projection, batch, num_latent, thought_logits if delta else None)
    s_sum, s_count = token_ce(student.logits, batch["decoder_labels"])
    thought_ce = thought_result_ce(thought_logits, batch) if delta else student.logits.new_zeros(())
    student_hidden = torch.stack([h[rows, batch["student_distill_pos"]] for h in student.hidden_states])

    student_ce = s_sum.sum() / s_count.sum().clamp(min=1)
    teacher_ce = t_sum.sum() / t_count.sum().clamp(min=1)
    distill = distillation_loss(student_hidden, teacher_hidden, distill_kind, divide_by_std)
    return CODILossOutput(
        loss=alpha * student_ce + beta * distill + gamma * teacher_ce + delta * thought_ce,
        student_ce=student_ce, teacher_ce=teacher_ce, distill=distill, thought_ce=thought_ce,
        student_ce_per_example=s_sum / s_count.clamp(min=1), teacher_ce_per_example=t_sum / t_count.clamp(min=1),
        student_hidden=student_hidden, teacher_hidden=teacher_hidden,
    )
