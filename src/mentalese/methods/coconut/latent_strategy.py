"""Coconut decoding as an `InputStrategy` of the one decode loop (batched, KV-cached).

Prompts are the benchmark's plain prompts; the strategy adds the rest, one forward per step:

    step 0          feed <|start-latent|>                              (not emitted)
    steps 1..n      feed the last hidden state (coconut), or the <|latent|> token (pause_as_thought)
    step n+1        feed <|end-latent|>
    steps n+2..     answer tokens (emitted), greedy or sampled with the decode config's settings

which is the official `Coconut.generate` (question + markers + n latents, then greedy tokens) without
its limits: any batch size, a KV cache instead of recomputing the whole sequence for every token.
n = the saved model's num_latent (c_thought * max_latent_stage after a full curriculum); the
official evaluation with pad_latent_to_max=false instead gives each test example
min(its gold steps, max_latent_stage) * c thoughts, which needs the gold CoT at test time.
`max_new_tokens` counts the n + 2 latent steps. The recorded token of a thought step is <|latent|>,
so `ctx.sequences` (what logits processors see) is the official layout. `record_thoughts=True` keeps
each thought's hidden state (coconut: the state fed back) per batch in `thoughts` ([B, n, d]).
"""

from __future__ import annotations

from typing import Any

import torch

from mentalese.decoding.sampling import SamplingConfig
from mentalese.decoding.strategies import DiscreteStrategy, StepContext, StepDecision


class CoconutStrategy(DiscreteStrategy):
    def __init__(self, model, sampling: SamplingConfig | None = None, record_thoughts: bool = False):
        super().__init__(sampling)  # None: the decode config's settings (a given one must equal them)
        self.model = model
        self.num_latent = model.num_latent
        self.continuous = model.spec.continuous
        self.record_thoughts = record_thoughts
        self.needs_hidden_states = self.continuous or record_thoughts
        self.thoughts: list[torch.Tensor] = []  # per batch: [B, n, d]

    def hidden_needed(self, step: int) -> bool:  # only the thought steps read the hidden state
        return self.needs_hidden_states and 1 <= step <= self.num_latent

    def start(self, prompt_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        self._batch_thoughts: list[torch.Tensor] = []

    def step(self, ctx: StepContext) -> StepDecision:
        n = self.num_latent
        hidden_step = torch.zeros(ctx.logits.shape[0], dtype=torch.bool, device=ctx.logits.device)
        if ctx.step == 0:
            return StepDecision(tokens=torch.full_like(hidden_step, self.model.bot_id, dtype=torch.long),
                                emit=hidden_step)
        if ctx.step <= n:
            if self.record_thoughts:
                self._batch_thoughts.append(ctx.hidden.detach().float().cpu())
                if ctx.step == n:
                    self.thoughts.append(torch.stack(self._batch_thoughts, dim=1))
            tokens = torch.full_like(hidden_step, self.model.latent_id, dtype=torch.long)
            embeds = self.model.project(ctx.hidden) if self.continuous else None
            return StepDecision(tokens=tokens, embeds=embeds, emit=hidden_step)
        if ctx.step == n + 1:
            return StepDecision(tokens=torch.full_like(hidden_step, self.model.eot_id, dtype=torch.long),
                                emit=hidden_step)
        return super().step(ctx)

    def row_info(self, row: int) -> dict[str, Any]:
        return {"latent_steps": self.num_latent + 2}
