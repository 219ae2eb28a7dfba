"""Per-step input strategies: the one hook through which decoding methods plug into the loop.

At every step the loop hands the strategy a `StepContext` (next-token logits, optionally the
last hidden state, the rows still running) and gets back a `StepDecision`: the token recorded for
each row, and optionally an input embedding that replaces that token's embedding in the next
forward pass. Soft thinking (concept tokens), its Dirichlet/Gumbel variants and CODI's continuous
thoughts are strategies; plain decoding is `DiscreteStrategy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from transformers import LogitsProcessorList

from latentlab.decoding.sampling import SamplingConfig, choose_tokens


@dataclass
class StepContext:
    step: int  # 0-based index of the decode step
    logits: torch.Tensor  # [B, V] float32 next-token logits at the last position
    hidden: torch.Tensor | None  # [B, d] last-layer hidden state there (when strategy.needs_hidden_states)
    sequences: torch.Tensor  # [B, T] prompt ids + every step's recorded token (input to logits processors)
    finished: torch.Tensor  # [B] bool, rows that already stopped
    embed_tokens: Callable[[torch.Tensor], torch.Tensor]  # token ids -> input embeddings
    generator: torch.Generator | None


@dataclass
class StepDecision:
    tokens: torch.Tensor  # [B] token recorded for this step (embedded unless replaced; ends the row if it is
    #                       a stop id and emitted: a latent, non-emitted step never stops a row)
    embeds: torch.Tensor | None = None  # [B, d] input embeddings to use instead of the tokens' own
    use_embeds: torch.Tensor | None = None  # [B] bool, rows that take `embeds`; None = all rows when embeds given
    emit: torch.Tensor | None = None  # [B] bool, rows whose token joins the visible output; None = all


class InputStrategy:
    """Base class. Override `step`; `start` resets per-row state for a new batch."""

    needs_hidden_states: bool = False

    def hidden_needed(self, step: int) -> bool:
        """Whether `step`'s context needs `hidden` (the forward before it then returns hidden states, which
        costs a little per call). Default: `needs_hidden_states` at every step."""
        return self.needs_hidden_states

    def start(self, prompt_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Called once per batch after tokenisation, before the prefill."""

    def step(self, ctx: StepContext) -> StepDecision:
        raise NotImplementedError

    def row_info(self, row: int) -> dict[str, Any]:
        """Extra per-row fields for the decode result (e.g. number of thinking steps)."""
        return {}


class DiscreteStrategy(InputStrategy):
    """Ordinary token decoding: greedy or sampled through the transformers logits processors."""

    def __init__(self, sampling: SamplingConfig | None = None, processors: LogitsProcessorList | None = None):
        self.sampling = sampling or SamplingConfig()
        self.processors = processors if processors is not None else self.sampling.processors()

    def step(self, ctx: StepContext) -> StepDecision:
        return StepDecision(tokens=choose_tokens(ctx.logits, ctx.sequences, self.sampling, self.processors, ctx.generator))
