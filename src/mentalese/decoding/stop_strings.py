"""Stop strings for any strategy: a row ends once its visible text holds one of them.

    strategy = StopAtStrings(DiscreteStrategy(), tokenizer, ["\\n\\n", "Question:"], end_id=tokenizer.eos_token_id)
    results = decode(model, tokenizer, prompts, config, strategy)   # then cut each text at its first stop string

The loop stops rows on token ids only; a stop string can span several tokens (or be part of one), so this
wrapper watches the emitted tokens of every row: after a step whose emitted token makes the decoded tail of the row
contain a stop string, the row's next emitted token is replaced by `end_id` (a stop id of the loop), which ends it.
The token that completed the stop string is kept, so the text up to the stop string is whole; the caller cuts
the text there. The tail decoded is the last (longest stop string's token count + 2) emitted tokens, as in
lm-eval's `MultiTokenEOSCriteria`; a stop string missed by that look-back only costs steps (the cut still finds
it). Latent steps (not emitted) are never replaced. A batch whose rows all stopped ends early, so with sampling
the generator advances less than without stop strings (later batches draw other samples).
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from mentalese.decoding.strategies import InputStrategy, StepContext, StepDecision, WrappingStrategy
from mentalese.errors import MentaleseError


class StopAtStrings(WrappingStrategy):
    """Wraps `inner`; see the module docstring. `stops`: non-empty strings (empty ones are ignored)."""

    def __init__(self, inner: InputStrategy, tokenizer: PreTrainedTokenizerBase, stops: Sequence[str], end_id: int):
        super().__init__(inner)
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        if not self.stops:
            raise MentaleseError("StopAtStrings needs at least one non-empty stop string")
        self.end_id = end_id
        self.lookback = max(len(tokenizer.encode(s, add_special_tokens=False)) for s in self.stops) + 2

    def start(self, prompt_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        super().start(prompt_ids, attention_mask)
        self.emitted: list[list[int]] = [[] for _ in range(prompt_ids.shape[0])]
        self.holds_stop = [False] * prompt_ids.shape[0]  # the row's text already holds a stop string

    def step(self, ctx: StepContext) -> StepDecision:
        decision = self.inner.step(ctx)
        emit = ~ctx.finished if decision.emit is None else decision.emit & ~ctx.finished
        holds = torch.tensor(self.holds_stop, device=emit.device)
        tokens = torch.where(holds & emit, self.end_id, decision.tokens)
        watched = torch.nonzero(emit & ~holds).flatten().tolist()
        if watched:
            values = tokens.tolist()
            for row in watched:
                self.emitted[row].append(values[row])
                tail = self.tokenizer.decode(self.emitted[row][-self.lookback:], skip_special_tokens=True)
                self.holds_stop[row] = any(s in tail for s in self.stops)
        return StepDecision(tokens=tokens, embeds=decision.embeds, use_embeds=decision.use_embeds, emit=decision.emit)
