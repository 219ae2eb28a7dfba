"""The CODI loss: student CE + teacher CE + hidden-state distillation, from a collated batch.

    L = alpha * L_student + beta * L_kd + gamma * L_teacher (+ w * L_step)

- Teacher: ONE forward of question + CoT + answer with every hidden state; its CE is the
  teacher loss and its hidden states, detached, are the distillation targets (the official code
  runs the teacher twice; in eval mode both give the same numbers, see the tests).
- Student: prefill question + <bot>, then `num_latent` single-position steps whose input is the
  projected last hidden state of the previous step, then <eot> + answer, all through one KV cache,
  with the attention mask extended and explicit position ids at every step (the official code
  passes no mask after the prefill, so its losses depend on the batch's padding).
- L_step (optional, not in CODI; `step_supervision`, methods/step_supervision.py, docs/step_supervision.md):
  result_token: the LM's output at <bot> and at thoughts 1..n-1 predicts the first token of CoT step
  1..n's result (`step_result_ids`), so that thought k carries step k's intermediate result;
  step_decoder (SIM-CoT): the n+1 latents <bot>..thought n, projected as they are fed (the last one is
  not fed to the LM), are read by an auxiliary decoder that rebuilds the teacher's CoT step of each.
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
from mentalese.methods.step_supervision import StepDecoder, StepSupervision, step_supervision_loss
from mentalese.models.cache_kwargs import cache_kwargs


@dataclass
class CODILossOutput:
    loss: torch.Tensor  # the weighted total (scalar, with grad)
    student_ce: torch.Tensor  # mean over the batch's answer tokens
    teacher_ce: torch.Tensor  # mean over the batch's CoT + answer tokens
    distill: torch.Tensor  # L_kd
    step_ce: torch.Tensor  # L_step, unweighted: result-token CE or step-decoder CE (0 when off)
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


def run_student(lm, projection, batch: dict[str, torch.Tensor], num_latent: int, thought_logits: list | None = None,
                thought_latents: list | None = None):
    """Prefill question+<bot>, `num_latent` continuous thoughts, then the decoder part. Returns its output.
    `thought_logits`, if given, receives the next-token logits [B, V] at <bot> and at thoughts 1..n-1;
    `thought_latents` the n+1 latents [B, d] from <bot> and thoughts 1..n (the projected hidden states: the
    first n are the thoughts fed back, the last is computed for the step decoder only)."""
    mask = batch["student_mask"]
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=lm.config)
    out = lm(input_ids=batch["student_ids"], attention_mask=mask, position_ids=position, **cache_kwargs(lm, cache),
             use_cache=True, output_hidden_states=True, logits_to_keep=1)
    next_pos = position[:, -1] + 1
    project = (lambda h: projection(h)) if projection is not None else (lambda h: h)
    for _ in range(num_latent):
        if thought_logits is not None:
            thought_logits.append(out.logits[:, -1])
        thought = project(out.hidden_states[-1][:, -1])
        if thought_latents is not None:
            thought_latents.append(thought)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = lm(inputs_embeds=thought[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                 **cache_kwargs(lm, cache), use_cache=True, output_hidden_states=True, logits_to_keep=1)
        next_pos = next_pos + 1
    if thought_latents is not None:
        thought_latents.append(project(out.hidden_states[-1][:, -1]))
    dec_ids = batch["decoder_ids"]
    dec_pos = next_pos[:, None] + torch.arange(dec_ids.shape[1], device=dec_ids.device)
    return lm(input_ids=dec_ids, attention_mask=torch.cat([mask, batch["decoder_mask"]], dim=1),
              position_ids=dec_pos, **cache_kwargs(lm, cache), use_cache=True, output_hidden_states=True)


def codi_loss(lm, projection, batch: dict[str, torch.Tensor], num_latent: int, alpha: float = 1.0,
              beta: float = 1.0, gamma: float = 1.0, distill_kind: str = "smooth_l1",
              divide_by_std: bool = True, step_supervision: StepSupervision | None = None,
              step_decoder: StepDecoder | None = None) -> CODILossOutput:
    """CODI's three losses (+ the optional step loss) for one collated batch (`collate_codi`); `projection`
    may be None; `step_decoder` is needed for step_supervision.kind=step_decoder."""
    if num_latent < 0:
        raise MentaleseError(f"num_latent must be >= 0, got {num_latent}")
    sup = step_supervision or StepSupervision()
    rows = torch.arange(batch["teacher_ids"].shape[0], device=batch["teacher_ids"].device)

    t_mask = batch["teacher_mask"]
    teacher = lm(input_ids=batch["teacher_ids"], attention_mask=t_mask,
                 position_ids=(t_mask.cumsum(-1) - 1).clamp(min=0), output_hidden_states=True)
    t_sum, t_count = token_ce(teacher.logits, batch["teacher_labels"])
    teacher_hidden = torch.stack([h[rows, batch["teacher_distill_pos"]] for h in teacher.hidden_states]).detach()

    logits: list[torch.Tensor] | None = [] if sup.on and sup.kind == "result_token" else None
    latents: list[torch.Tensor] | None = [] if sup.on and sup.kind == "step_decoder" else None
    student = run_student(lm, projection, batch, num_latent, logits, latents)
    s_sum, s_count = token_ce(student.logits, batch["decoder_labels"])
    step_ce = student.logits.new_zeros(())
    if sup.on and (logits or latents):
        step_ce = step_supervision_loss(sup, batch, torch.stack(logits, dim=1) if logits else None,
                                        torch.stack(latents, dim=1) if latents else None,
                                        lm.get_input_embeddings(), step_decoder)
    student_hidden = torch.stack([h[rows, batch["student_distill_pos"]] for h in student.hidden_states])

    student_ce = s_sum.sum() / s_count.sum().clamp(min=1)
    teacher_ce = t_sum.sum() / t_count.sum().clamp(min=1)
    distill = distillation_loss(student_hidden, teacher_hidden, distill_kind, divide_by_std)
    step_weight = sup.weight if sup.on else 0.0
    return CODILossOutput(
        loss=alpha * student_ce + beta * distill + gamma * teacher_ce + step_weight * step_ce,
        student_ce=student_ce, teacher_ce=teacher_ce, distill=distill, step_ce=step_ce,
        student_ce_per_example=s_sum / s_count.clamp(min=1), teacher_ce_per_example=t_sum / t_count.clamp(min=1),
        student_hidden=student_hidden, teacher_hidden=teacher_hidden,
    )
