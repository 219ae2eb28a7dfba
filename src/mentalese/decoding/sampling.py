"""Token sampling settings, turned into transformers `LogitsProcessor`s.

`SamplingConfig` is the one owner of how tokens are chosen: `DecodeConfig` inherits it, and
`decode()` hands `config.sampling()` to the strategy (`InputStrategy.bind_sampling`), which honours
it or refuses it. Temperature, top-k, top-p and min-p are transformers' own warpers (so users'
processors compose with ours); we only validate the values up front and build the list in the
standard order. A shaping value set while do_sample is false is refused: greedy would ignore it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from mentalese.errors import MentaleseError


def validate_shaping(temperature: float, top_k: int, top_p: float, min_p: float) -> None:
    """Check temperature, top-k, top-p and min-p values (shared by every config that has them)."""
    if not math.isfinite(temperature) or temperature < 0:
        raise MentaleseError(f"temperature must be a finite number >= 0, got {temperature}")
    if not isinstance(top_k, int) or top_k < 0:
        raise MentaleseError(f"top_k must be an integer >= 0, got {top_k}")
    if not 0 < top_p <= 1:
        raise MentaleseError(f"top_p must be in (0, 1], got {top_p}")
    if not 0 <= min_p < 1:
        raise MentaleseError(f"min_p must be in [0, 1), got {min_p}")


@dataclass
class SamplingConfig:
    """How the next token is chosen from the logits. temperature 0 or do_sample=False means greedy."""

    do_sample: bool = field(default=False, metadata={"help": "sample (True) or take the argmax (False)"})
    temperature: float = field(default=1.0, metadata={"help": ">= 0; 0 means greedy"})
    top_k: int = field(default=0, metadata={"help": "keep the k most likely tokens; 0 = off"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus mass in (0, 1]; 1 = off"})
    min_p: float = field(default=0.0, metadata={"help": "drop tokens below min_p * max prob, in [0, 1); 0 = off"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        validate_shaping(self.temperature, self.top_k, self.top_p, self.min_p)
        if not self.do_sample:  # greedy would silently ignore a shaping value
            for name, off in (("temperature", (0, 1)), ("top_k", (0,)), ("top_p", (1,)), ("min_p", (0,))):
                if getattr(self, name) not in off:
                    raise MentaleseError(f"{name}={getattr(self, name)} needs do_sample=true (greedy decoding "
                                         f"ignores it): set do_sample=true or drop {name}")

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0

    def processors(self) -> LogitsProcessorList:
        """Warpers in transformers' order: temperature, top-k, top-p, min-p."""
        procs: list[LogitsProcessor] = []
        if self.temperature not in (0, 1):
            procs.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k > 0:
            procs.append(TopKLogitsWarper(self.top_k))
        if self.top_p < 1:
            procs.append(TopPLogitsWarper(self.top_p))
        if self.min_p > 0:
            procs.append(MinPLogitsWarper(self.min_p))
        return LogitsProcessorList(procs)


def choose_tokens(
    logits: torch.Tensor,
    sequences: torch.Tensor,
    config: SamplingConfig,
    processors: LogitsProcessorList,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Greedy argmax, or a sample from the processed distribution. logits: [B, V] -> [B]."""
    if config.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(processors(sequences, logits), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
