"""Step-supervised latents: each continuous thought is tied to one explicit CoT step. Neither kind is part
of CODI or Coconut as published (docs/step_supervision.md).

    kind=result_token   the LM's own next-token logits at a thought predict the first token of its step's
                        result (`7+5=12` -> `1`). Cheap: no extra weights. Our addition (was CODI's
                        `thought_loss_weight`).
    kind=step_decoder   SIM-CoT (Wei et al., ICLR 2026; github InternLM/SIM-CoT): an auxiliary causal LM
                        reads a latent as its first input embedding and is teacher-forced on the step's
                        tokens + eos. Training only: it is saved in checkpoints (so resume is exact) and
                        never in the inference model.

Method-agnostic: everything here takes thought logits [B, n, V] or thought latents [B, m, d] (the input
embeddings the thoughts were fed as: CODI's projected hidden states, Coconut's hidden states) and targets.

Alignment (c = `thoughts_per_step`): thought t belongs to slot t // c, slot s to CoT step s.
- result_token: each of the c thoughts of slot s predicts step s's result; steps beyond the thoughts are
  dropped, thoughts beyond the steps (or on a step without a result) are unsupervised.
- step_decoder: slot s's c latents are the decoder's first c inputs; the last slot also gets every remaining
  step (joined by the CoT separator), as both official codes do; slots beyond the steps are unsupervised
  (`beyond_steps=none`, CODI+SIM-CoT) or reconstruct the answer text (`beyond_steps=answer`, Coconut+SIM-CoT,
  which pads with the answer tokens "### 18").

Departures from the official SIM-CoT code (all documented in docs/step_supervision.md):
- steps are split as text (the task's `cot_steps`) and each is tokenised alone, not found by scanning token
  ids for `<<`/`>>` (GPT-2: official steps 2.. start with " <<", ours with "<<");
- padding is an explicit mask (the official CODI code masks pad ids; with pad == eos that would hide the eos
  target), positions start at 0 (Coconut+SIM-CoT passes 1..L);
- the decoder's input embedding is frozen when untied from its output head: step tokens are embedded by the
  MAIN model's input embedding (as in both official codes), so that table is never used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mentalese.errors import MentaleseError
from mentalese.methods.formatting import IGNORE_INDEX
from mentalese.tasks.cot_steps import step_result

log = logging.getLogger(__name__)

KINDS = ("none", "result_token", "step_decoder")
BEYOND_STEPS = ("none", "answer")
DECODER_LOSS_MEANS = ("token", "row")
STEP_DECODER_DIR = "step_decoder"  # inside a checkpoint-N directory; never in the saved inference model


@dataclass
class StepSupervision:
    """Which step supervision a latent-thought method adds (nested config `step_supervision.*`)."""

    kind: str = field(default="none", metadata={
        "help": "none | result_token (the LM's output at each thought predicts the first token of its CoT "
                "step's result; ours) | step_decoder (SIM-CoT: an auxiliary decoder, training only, rebuilds "
                "each step from its latent)"})
    weight: float = field(default=1.0, metadata={
        "help": "weight of the step loss in the total (SIM-CoT official: 1 for CODI and Coconut)"})
    thoughts_per_step: int = field(default=1, metadata={
        "help": "c: consecutive thoughts per CoT step (CODI+SIM-CoT: 1; Coconut+SIM-CoT: c_thought, 2 on GSM8k)"})
    beyond_steps: str = field(default="none", metadata={
        "help": "step_decoder: slots past the last step are unsupervised (none; CODI+SIM-CoT) or rebuild the "
                "answer text (answer; Coconut+SIM-CoT)"})
    decoder_model: str | None = field(default=None, metadata={
        "help": "step_decoder: hub name or path of the decoder's initial weights; None = the method's starting "
                "LM (official). Must share the tokenizer and hidden size"})
    decoder_loss_mean: str = field(default="token", metadata={
        "help": "step_decoder: per slot, CE summed over tokens / tokens (token; CODI+SIM-CoT) or / rows (row; "
                "Coconut+SIM-CoT); then the mean over slots that have a step"})

    def __post_init__(self) -> None:
        for name, choices in (("kind", KINDS), ("beyond_steps", BEYOND_STEPS),
                              ("decoder_loss_mean", DECODER_LOSS_MEANS)):
            if getattr(self, name) not in choices:
                raise MentaleseError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        if not self.weight >= 0:
            raise MentaleseError(f"weight must be >= 0, got {self.weight}")
        if self.thoughts_per_step < 1:
            raise MentaleseError(f"thoughts_per_step must be >= 1, got {self.thoughts_per_step}")

    @property
    def on(self) -> bool:
        return self.kind != "none" and self.weight > 0


# --- targets -----------------------------------------------------------------------------------------------

def step_result_ids(tokenizer, steps: Sequence[str]) -> list[int]:
    """First token of each step's result (`step_result`: `7+5=2` -> `2`, `<<600*30/100=180>>` -> `180`);
    IGNORE_INDEX for a step without one. The result_token targets, one per step."""
    out = []
    for step in steps:
        result = step_result(step) or ""
        ids = tokenizer(result, add_special_tokens=False)["input_ids"] if result else []
        out.append(ids[0] if ids else IGNORE_INDEX)
    return out


def result_token_targets(step_results: torch.Tensor, num_thoughts: int, thoughts_per_step: int = 1) -> torch.Tensor:
    """[B, S] per-step result tokens -> [B, num_thoughts]: thought t gets step t // c's (IGNORE_INDEX past
    the steps)."""
    steps = torch.arange(num_thoughts, device=step_results.device) // thoughts_per_step
    padded = torch.cat([step_results, step_results.new_full((step_results.shape[0], 1), IGNORE_INDEX)], dim=1)
    return padded[:, steps.clamp(max=step_results.shape[1])]


def step_decoder_targets(tokenizer, steps: Sequence[str], num_slots: int, separator: str = " ",
                         answer: str | None = None) -> list[list[int]]:
    """Per slot, the token ids the step decoder must produce (step + eos). The last slot takes every step
    from it on, joined by `separator`; slots past the steps get `answer` + eos, or [] (unsupervised)."""
    if num_slots < 1:
        raise MentaleseError(f"the step decoder needs at least one slot, got {num_slots}")
    if tokenizer.eos_token_id is None:
        raise MentaleseError("the step decoder's targets end with eos; the tokenizer has none")
    texts = list(steps[:num_slots - 1])
    if len(steps) >= num_slots:
        texts.append(separator.join(steps[num_slots - 1:]))
    eos = [tokenizer.eos_token_id]
    out = [tokenizer(t, add_special_tokens=False)["input_ids"] + eos for t in texts]
    filler = tokenizer(answer, add_special_tokens=False)["input_ids"] + eos if answer is not None else []
    return out + [list(filler) for _ in range(num_slots - len(out))]


def pad_step_targets(rows: Sequence[Sequence[Sequence[int]]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example slot targets -> ids [B, S, L] and a bool mask [B, S, L] (False = padding / no step)."""
    slots = max(len(r) for r in rows)
    width = max([len(s) for r in rows for s in r] + [1])
    ids = torch.full((len(rows), slots, width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), slots, width), dtype=torch.bool)
    for b, row in enumerate(rows):
        for s, tokens in enumerate(row):
            if tokens:
                ids[b, s, :len(tokens)] = torch.tensor(list(tokens))
                mask[b, s, :len(tokens)] = True
    return ids, mask


# --- losses ------------------------------------------------------------------------------------------------

def result_token_loss(thought_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean CE of thought logits [B, n, V] against targets [B, n] (IGNORE_INDEX = unsupervised)."""
    if thought_logits.shape[:2] != targets.shape:
        raise MentaleseError(f"thought logits {tuple(thought_logits.shape[:2])} and targets {tuple(targets.shape)} "
                             "must have the same [batch, thoughts]")
    logits = thought_logits.float()
    if not (targets != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)


class StepDecoder(nn.Module):
    """SIM-CoT's auxiliary decoder: a causal LM that reads c latents as its first input embeddings, then
    the step's token embeddings (teacher forcing), and predicts the step. Used in training only."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, latents: torch.Tensor, step_embeds: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        """latents [B, c, d], step_embeds [B, L, d], step_mask [B, L] -> logits [B, c + L, V]."""
        dtype = self.lm.get_input_embeddings().weight.dtype
        embeds = torch.cat([latents.to(dtype), step_embeds.to(dtype)], dim=1)
        mask = torch.cat([step_mask.new_ones(latents.shape[:2]), step_mask], dim=1).long()
        position = torch.arange(embeds.shape[1], device=embeds.device).expand(embeds.shape[0], -1)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position).logits


def step_decoder_loss(decoder: StepDecoder, latents: torch.Tensor, step_ids: torch.Tensor, step_mask: torch.Tensor,
                      embed: nn.Module, thoughts_per_step: int = 1, mean: str = "token") -> torch.Tensor:
    """Teacher-forced CE of the step decoder. latents [B, m, d] (slot s reads latents[:, s*c:(s+1)*c]),
    step_ids / step_mask [B, S, L] (`pad_step_targets`), `embed` the main model's input embedding. Per slot:
    CE summed over its tokens / its tokens (`token`) or / its rows (`row`); returned: the mean over slots
    that have a step in the batch."""
    if mean not in DECODER_LOSS_MEANS:
        raise MentaleseError(f"mean must be one of {', '.join(DECODER_LOSS_MEANS)}; got {mean!r}")
    c, slots = thoughts_per_step, step_ids.shape[1]
    if latents.shape[1] < slots * c:
        raise MentaleseError(f"{slots} step slots x {c} thoughts need {slots * c} latents, got {latents.shape[1]}")
    per_slot = []
    for s in range(slots):
        rows = step_mask[:, s].any(-1).nonzero().squeeze(-1)
        if rows.numel() == 0:
            continue
        mask = step_mask[rows, s]
        width = int(mask.sum(-1).max())
        ids, mask = step_ids[rows, s, :width], mask[:, :width]
        logits = decoder(latents[rows, s * c:(s + 1) * c], embed(ids), mask)
        labels = torch.cat([ids.new_full((len(rows), c), IGNORE_INDEX), ids.masked_fill(~mask, IGNORE_INDEX)], dim=1)
        shifted = logits[:, :-1].float()
        ce = F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), labels[:, 1:].reshape(-1),
                             ignore_index=IGNORE_INDEX, reduction="sum")
        per_slot.append(ce / (mask.sum() if mean == "token" else len(rows)))
    if not per_slot:
        return latents.sum() * 0.0
    return torch.stack(per_slot).mean()


def step_supervision_loss(settings: StepSupervision, batch: dict, thought_logits: torch.Tensor | None,
                          thought_latents: torch.Tensor | None, embed: nn.Module | None = None,
                          decoder: StepDecoder | None = None) -> torch.Tensor:
    """The unweighted step loss of `settings.kind` for a batch with the keys `collate_step_targets` writes.
    thought_logits [B, n, V] (result_token), thought_latents [B, m, d] + `embed` + `decoder` (step_decoder)."""
    if settings.kind == "result_token":
        if "step_result_ids" not in batch:
            raise MentaleseError("step_supervision.kind=result_token needs `step_result_ids` in the batch")
        targets = result_token_targets(batch["step_result_ids"].to(thought_logits.device), thought_logits.shape[1],
                                       settings.thoughts_per_step)
        return result_token_loss(thought_logits, targets)
    if settings.kind == "step_decoder":
        if decoder is None or "step_decoder_ids" not in batch:
            raise MentaleseError("step_supervision.kind=step_decoder needs a StepDecoder and `step_decoder_ids` "
                                 "in the batch")
        return step_decoder_loss(decoder, thought_latents, batch["step_decoder_ids"], batch["step_decoder_mask"],
                                 embed, settings.thoughts_per_step, settings.decoder_loss_mean)
    raise MentaleseError(f"step supervision kind {settings.kind!r} has no loss")


def collate_step_targets(step_results: Sequence[Sequence[int]], decoder_rows: Sequence[Sequence[Sequence[int]]] | None
                         ) -> dict[str, torch.Tensor]:
    """Batch keys of `step_supervision_loss`: step_result_ids [B, S] (IGNORE_INDEX-padded) and, when any row
    has decoder targets, step_decoder_ids / step_decoder_mask [B, S, L]."""
    width = max([len(r) for r in step_results] + [1])
    results = torch.full((len(step_results), width), IGNORE_INDEX, dtype=torch.long)
    for b, r in enumerate(step_results):
        if r:
            results[b, :len(r)] = torch.tensor(list(r))
    out = {"step_result_ids": results}
    if decoder_rows and any(any(s) for r in decoder_rows for s in r):
        out["step_decoder_ids"], out["step_decoder_mask"] = pad_step_targets(decoder_rows)
    return out


# --- the decoder's weights: built from the starting LM, kept in checkpoints only ---------------------------

def build_step_decoder(settings: StepSupervision, base_model: str, dtype: str = "float32", device: str = "auto",
                       hidden_size: int | None = None) -> StepDecoder:
    """A fresh decoder from `settings.decoder_model` or else `base_model` (the method's starting LM, with its
    original vocabulary: the official code loads it again, unresized). Every weight trains (official), except an
    input embedding that is not tied to the output head (unused: step tokens come embedded by the main model)."""
    from mentalese.models.loading import load_model_and_tokenizer

    lm, _ = load_model_and_tokenizer(settings.decoder_model or base_model, dtype=dtype, device=device)
    if hidden_size is not None and lm.get_input_embeddings().weight.shape[1] != hidden_size:
        raise MentaleseError(f"step decoder {settings.decoder_model or base_model!r} has width "
                             f"{lm.get_input_embeddings().weight.shape[1]}, the latents {hidden_size}: they must match")
    inp, out = lm.get_input_embeddings(), lm.get_output_embeddings()
    if out is None or out.weight.data_ptr() != inp.weight.data_ptr():
        inp.weight.requires_grad_(False)
    return StepDecoder(lm)


def save_step_decoder(decoder: StepDecoder, checkpoint_dir: str | Path) -> None:
    decoder.lm.save_pretrained(str(Path(checkpoint_dir) / STEP_DECODER_DIR))


def load_step_decoder_weights(decoder: StepDecoder, checkpoint_dir: str | Path) -> None:
    """Restore the decoder saved in `checkpoint_dir` (strict: every weight must be there)."""
    from transformers import AutoModelForCausalLM

    path = Path(checkpoint_dir) / STEP_DECODER_DIR
    if not (path / "config.json").is_file():
        raise MentaleseError(f"{checkpoint_dir} has no step decoder ({STEP_DECODER_DIR}/): it was written by a run "
                             "without step_supervision.kind=step_decoder; use a new output_dir")
    dtype = decoder.lm.get_input_embeddings().weight.dtype
    saved, info = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, output_loading_info=True)
    if info["missing_keys"] or info["unexpected_keys"]:
        raise MentaleseError(f"{path}: step decoder weights do not match (missing {sorted(info['missing_keys'])[:3]}, "
                             f"unexpected {sorted(info['unexpected_keys'])[:3]})")
    decoder.lm.load_state_dict(saved.state_dict(), strict=True)


class ModelWithStepDecoder(nn.Module):
    """What a Trainer trains when kind=step_decoder: the method's model and the step decoder. Calls
    `model(*args, step_decoder=decoder, **kwargs)`; only `model` is the inference model."""

    accepts_loss_kwargs = False

    def __init__(self, model: nn.Module, step_decoder: StepDecoder):
        super().__init__()
        self.model, self.step_decoder = model, step_decoder
        self.config = getattr(model, "config", None)
        self._no_split_modules = getattr(model, "_no_split_modules", None)

    def forward(self, *args, **kwargs):
        return self.model(*args, step_decoder=self.step_decoder, **kwargs)
