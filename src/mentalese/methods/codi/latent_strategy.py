"""CODI decoding as an `InputStrategy` of the one decode loop.

Prompts are the benchmark's plain prompts; the strategy adds the rest, one forward per step:

    step 0          feed <bot>                                      (latent, not emitted)
    steps 1..n      feed projection(last hidden state)             (the n continuous thoughts)
    step n+1        feed <eot>
    steps n+2..     answer tokens (emitted), greedy or sampled with the decode config's settings

So a prompt costs n+2 latent steps before the first visible token (`max_new_tokens` counts them),
the thought at step 1 comes from the <bot> position as in the official code, and batching, left
padding, masks, position ids and the KV cache are the loop's. `record_thoughts=True` keeps each
thought's last hidden state before the projection (for `mentalese analyze codi-probe`). Sampling settings
come from the decode config (`decode.do_sample/temperature/...`, bound by `decode()`) and apply to the
answer tokens; the latent steps sample nothing, so no setting is left unused.
"""

from __future__ import annotations

from typing import Any

import torch

from mentalese.decoding.sampling import SamplingConfig
from mentalese.decoding.strategies import DiscreteStrategy, StepContext, StepDecision


class CODIStrategy(DiscreteStrategy):
    needs_hidden_states = True

    def hidden_needed(self, step: int) -> bool:  # only the thought steps read the hidden state
        return 1 <= step <= self.num_latent

    def __init__(self, model, sampling: SamplingConfig | None = None, record_thoughts: bool = False):
        super().__init__(sampling)  # None: the decode config's settings (a given one must equal them)
        self.model = model
        self.num_latent = model.spec.num_latent
        self.record_thoughts = record_thoughts
        self.thoughts: list[torch.Tensor] = []  # per batch: [B, n, d] hidden states before the projection

    def start(self, prompt_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        self._batch_thoughts: list[torch.Tensor] = []

    def step(self, ctx: StepContext) -> StepDecision:
        n, B = self.num_latent, ctx.logits.shape[0]
        latent = torch.zeros(B, dtype=torch.bool, device=ctx.logits.device)
        if ctx.step == 0:
            return StepDecision(tokens=torch.full_like(latent, self.model.bot_id, dtype=torch.long), emit=latent)
        if ctx.step <= n:
            if self.record_thoughts:
                self._batch_thoughts.append(ctx.hidden.detach().float().cpu())
                if ctx.step == n:
                    self.thoughts.append(torch.stack(self._batch_thoughts, dim=1))
            return StepDecision(tokens=torch.full_like(latent, self.model.bot_id, dtype=torch.long),
                                embeds=self.model.project(ctx.hidden), emit=latent)
        if ctx.step == n + 1:
            return StepDecision(tokens=torch.full_like(latent, self.model.eot_id, dtype=torch.long), emit=latent)
        return super().step(ctx)

    def row_info(self, row: int) -> dict[str, Any]:
        return {"latent_steps": self.num_latent + 2}
