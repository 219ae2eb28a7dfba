"""Per-step input strategies: the one hook through which decoding methods plug into the loop.

At every step the loop hands the strategy a `StepContext` (next-token logits, optionally the
last hidden state, the rows still running) and gets back a `StepDecision`: the token recorded for
each row, and optionally an input embedding that replaces that token's embedding in the next
forward pass. Soft thinking (concept tokens), its Dirichlet/Gumbel variants and CODI's continuous
thoughts are strategies; plain decoding is `DiscreteStrategy`.

Token sampling has one owner, the decode config: `decode()` calls `strategy.bind_sampling(
config.sampling())` once, and the strategy either uses those settings for every token it samples or
raises a `MentaleseError` naming the setting it cannot honour (never ignores it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from mentalese.decoding.sampling import SamplingConfig, choose_tokens
from mentalese.errors import MentaleseError


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


def _setting(name: str, value: Any) -> str:
    return f"decode.{name}={str(value).lower() if isinstance(value, bool) else value}"


def refuse_unless_greedy(sampling: SamplingConfig, who: str, instead: str) -> None:
    """For strategies that sample no tokens from decode.*: refuse any setting but greedy."""
    if not sampling.greedy:
        raise MentaleseError(f"{who} cannot honour {_setting('do_sample', True)} "
                             f"(temperature={sampling.temperature}): {instead}")


def refuse_unless_equal(sampling: SamplingConfig, supported: SamplingConfig, who: str, instead: str) -> None:
    """For strategies that sample one fixed way (`supported`): refuse the first setting that differs."""
    for f in fields(SamplingConfig):
        value = getattr(sampling, f.name)
        if value != getattr(supported, f.name):
            raise MentaleseError(f"{who} cannot honour {_setting(f.name, value)}: {instead}")


class InputStrategy:
    """Base class. Override `step`; `start` resets per-row state for a new batch; a strategy that samples
    tokens overrides `bind_sampling` to take decode.*'s settings."""

    needs_hidden_states: bool = False

    def hidden_needed(self, step: int) -> bool:
        """Whether `step`'s context needs `hidden` (the forward before it then returns hidden states, which
        costs a little per call). Default: `needs_hidden_states` at every step."""
        return self.needs_hidden_states

    def bind_sampling(self, sampling: SamplingConfig) -> None:
        """Called by `decode()` once, before any work, with the decode config's sampling settings.
        Default: the strategy chooses its tokens itself, so only greedy settings (the defaults) are accepted."""
        refuse_unless_greedy(sampling, type(self).__name__, "it chooses its tokens itself; leave decode.do_sample "
                             "false, or override bind_sampling to use the settings")

    def start(self, prompt_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Called once per batch after tokenisation, before the prefill."""

    def step(self, ctx: StepContext) -> StepDecision:
        raise NotImplementedError

    def row_info(self, row: int) -> dict[str, Any]:
        """Extra per-row fields for the decode result (e.g. number of thinking steps)."""
        return {}


class WrappingStrategy(InputStrategy):
    """A strategy around another (`inner`): every hook is delegated; a subclass overrides what it adds to
    (calling super()), e.g. `step` to watch or change the inner decision."""

    def __init__(self, inner: InputStrategy):
        self.inner = inner
        self.needs_hidden_states = inner.needs_hidden_states

    def hidden_needed(self, step: int) -> bool:
        return self.inner.hidden_needed(step)

    def bind_sampling(self, sampling: SamplingConfig) -> None:
        self.inner.bind_sampling(sampling)

    def start(self, prompt_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        self.inner.start(prompt_ids, attention_mask)

    def step(self, ctx: StepContext) -> StepDecision:
        return self.inner.step(ctx)

    def row_info(self, row: int) -> dict[str, Any]:
        return self.inner.row_info(row)


class DiscreteStrategy(InputStrategy):
    """Ordinary token decoding with decode.*'s sampling: greedy, or sampled through transformers' warpers.

    `processors`: extra transformers `LogitsProcessor`s (e.g. a repetition penalty), applied to the logits
    before the sampling warpers, in greedy decoding too (as `generate` does). `sampling` need not be given:
    `decode()` binds the decode config's settings, and refuses a config that differs from a given one.
    """

    def __init__(self, sampling: SamplingConfig | None = None, processors: Sequence[LogitsProcessor] | None = None):
        self.built_with = sampling
        self.extra_processors = LogitsProcessorList(processors or [])
        self.bind_sampling(sampling or SamplingConfig())

    def bind_sampling(self, sampling: SamplingConfig) -> None:
        if self.built_with is not None and sampling != self.built_with:
            raise MentaleseError(f"{type(self).__name__} was built with {self.built_with} but decode.* says "
                                 f"{sampling}: set sampling in the DecodeConfig only (build the strategy without it)")
        self.sampling = sampling
        self.warpers = sampling.processors()

    def step(self, ctx: StepContext) -> StepDecision:
        logits = self.extra_processors(ctx.sequences, ctx.logits) if self.extra_processors else ctx.logits
        return StepDecision(tokens=choose_tokens(logits, ctx.sequences, self.sampling, self.warpers, ctx.generator))
