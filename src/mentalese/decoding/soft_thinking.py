"""Soft Thinking (Zhang et al. 2505.15778) and Stochastic Soft Thinking (Wu et al. 2508.03440).

A decoding strategy for reasoning models that think inside `<think> ... </think>`:

    strategy = SoftThinkingStrategy(SoftThinkingConfig(mode="gumbel"), tokenizer)
    results = decode(model, tokenizer, prompts, DecodeConfig(max_new_tokens=4096), strategy)

Per row, three phases: `before` (discrete, until the row writes the opening tag; rows whose prompt
already ends inside an open `<think>` skip it), `thinking` (every step feeds a concept token, see
`concept_tokens.py`, and records its argmax), `answer` (discrete tokens). Discrete tokens are chosen
with the decode config's sampling settings (`decode.do_sample/temperature/top_k/top_p/min_p`, the one
owner; the papers' answer sampling is `decode.do_sample=true temperature=0.6 top_k=30 top_p=0.95`);
this config's `temperature/top_k/top_p/min_p` shape the concept tokens only. Thinking ends when
the recorded token is the closing tag, or by Cold Stop: after `cold_stop_patience` consecutive
thinking steps whose full-vocabulary entropy is below `cold_stop_threshold`, the step's token is
replaced by the closing tag. The step that records the
closing tag feeds its one-hot embedding. All rows share one forward per step; one max_new_tokens
covers thinking and answer, as in the papers.

Deviation from the code both papers ran: there, rows stayed in soft mode after `</think>` (so
answers were the argmax of the concept distribution, i.e. greedy). We switch them to discrete
decoding (the papers' stated method); `answer_phase_soft=True` reproduces the official behaviour
(and so refuses non-greedy decode.* settings, which it could not honour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from mentalese.decoding.concept_tokens import (
    concept_token_embedding,
    dirichlet_resample,
    entropy,
    filter_distribution,
    gumbel_noise,
    gumbel_softmax_weights,
    keep_top,
    tempered_probs,
)
from mentalese.decoding.sampling import SamplingConfig, choose_tokens, validate_shaping
from mentalese.decoding.strategies import (
    InputStrategy, StepContext, StepDecision, WrappingStrategy, refuse_unless_greedy,
)
from mentalese.errors import MentaleseError

MODES = ("vanilla", "dirichlet", "gumbel")
BEFORE, THINKING, ANSWER = 0, 1, 2


def papers_answer_sampling() -> SamplingConfig:
    """The papers' discrete sampling (outside thinking): give it as decode.* settings."""
    return SamplingConfig(do_sample=True, temperature=0.6, top_k=30, top_p=0.95)


@dataclass
class SoftThinkingConfig:
    """Soft thinking settings; defaults are the papers' (QwQ-32B / R1-Distill runs).

    temperature/top_k/top_p/min_p shape the concept tokens of the thinking phase only; discrete tokens
    (before thinking, answer) take decode.do_sample/temperature/top_k/top_p/min_p.
    """

    mode: str = field(default="vanilla", metadata={"help": "vanilla (concept tokens), dirichlet or gumbel"})
    temperature: float = field(default=0.6, metadata={
        "help": "concept-token temperature (thinking only; answer tokens: decode.temperature); 0 = one-hot argmax"})
    top_k: int = field(default=30, metadata={"help": "concept-token top-k (thinking only); 0 = off (full sort)"})
    top_p: float = field(default=0.95, metadata={"help": "concept-token top-p in (0, 1], after top-k (thinking only)"})
    min_p: float = field(default=0.001, metadata={
        "help": "concept tokens drop p_i < min_p * max p, in [0, 1); after top-p (thinking only)"})
    max_topk: int = field(default=10, metadata={"help": "tokens mixed into a concept token (15 for AIME/AMC)"})
    dirichlet_gamma: float = field(default=4.0, metadata={"help": "Dir(gamma * p) concentration scale (paper: 4)"})
    gumbel_tau: float = field(default=0.5, metadata={"help": "Gumbel-Softmax temperature (paper: 0.5; 0.6 MATH500)"})
    think_open: str = field(default="<think>", metadata={
        "help": "opening tag; rows whose prompt does not end inside it decode discretely until they write it. "
                "Empty: every row thinks right after its prompt"})
    think_close: str = field(default="</think>", metadata={"help": "closing tag; one token of the tokenizer"})
    cold_stop: bool = field(default=True, metadata={"help": "Cold Stop (paper 1); off in paper 2's scripts"})
    cold_stop_threshold: float = field(default=0.01, metadata={"help": "entropy threshold tau (nats, or normalised)"})
    cold_stop_patience: int = field(default=256, metadata={"help": "consecutive low-entropy steps k that end thinking"})
    entropy_normalised: bool = field(default=False, metadata={
        "help": "Cold Stop entropy divided by ln|V| (one fork's choice); default nats as in paper 1"})
    answer_phase_soft: bool = field(default=False, metadata={
        "help": "reproduce the official code's bug: rows stay soft after </think> (answers = argmax); "
                "needs greedy decode.* settings"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.mode not in MODES:
            raise MentaleseError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        validate_shaping(self.temperature, self.top_k, self.top_p, self.min_p)
        if not isinstance(self.max_topk, int) or self.max_topk < 1:
            raise MentaleseError(f"max_topk must be an integer >= 1, got {self.max_topk}")
        if not self.dirichlet_gamma > 0 or not math.isfinite(self.dirichlet_gamma):
            raise MentaleseError(f"dirichlet_gamma must be > 0, got {self.dirichlet_gamma}")
        if not self.gumbel_tau > 0 or not math.isfinite(self.gumbel_tau):
            raise MentaleseError(f"gumbel_tau must be > 0, got {self.gumbel_tau}")
        if not self.cold_stop_threshold >= 0:
            raise MentaleseError(f"cold_stop_threshold must be >= 0, got {self.cold_stop_threshold}")
        if not isinstance(self.cold_stop_patience, int) or self.cold_stop_patience < 1:
            raise MentaleseError(f"cold_stop_patience must be an integer >= 1, got {self.cold_stop_patience}")
        if not self.think_close:
            raise MentaleseError("think_close must name the closing tag (e.g. </think>)")

    def check_sampling(self, sampling: SamplingConfig) -> None:
        """Refuse decode.* settings these settings cannot honour (before any model is loaded)."""
        if self.answer_phase_soft:
            refuse_unless_greedy(sampling, "soft thinking with answer_phase_soft=true",
                                 "its answers are concept-token argmaxes (the official code); "
                                 "set soft_thinking.answer_phase_soft=false to sample them")


def single_token_id(tokenizer: PreTrainedTokenizerBase, tag: str, what: str) -> int:
    """The id of `tag`, which must be one token of the vocabulary."""
    ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    if len(ids) != 1 or (unk is not None and ids[0] == unk and tag != tokenizer.unk_token):
        raise MentaleseError(
            f"the tokenizer has no single token for the {what} tag {tag!r} (it encodes to {ids}); "
            f"add it (models.loading.add_special_tokens) or configure the tag the model uses")
    return ids[0]


class SoftThinkingStrategy(InputStrategy):
    """Concept-token thinking with per-row phases; see the module docstring."""

    def __init__(self, config: SoftThinkingConfig, tokenizer: PreTrainedTokenizerBase):
        config.validate()
        self.config = config
        self.close_id = single_token_id(tokenizer, config.think_close, "closing")
        self.open_id = single_token_id(tokenizer, config.think_open, "opening") if config.think_open else None
        self.bind_sampling(SamplingConfig())  # greedy until decode() binds the decode config's settings

    def bind_sampling(self, sampling: SamplingConfig) -> None:
        """Discrete tokens (before thinking, answer) are chosen with `sampling`, the decode config's."""
        self.config.check_sampling(sampling)
        self.sampling = sampling
        self.warpers = sampling.processors()

    # --- per-batch state ----------------------------------------------------------

    def start(self, prompt_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        B, device = prompt_ids.shape[0], prompt_ids.device
        self.phase = torch.full((B,), THINKING, dtype=torch.long, device=device)
        if self.open_id is not None:
            for r, (ids, mask) in enumerate(zip(prompt_ids.tolist(), attention_mask.tolist())):
                real = [t for t, m in zip(ids, mask) if m]
                opened = max((i for i, t in enumerate(real) if t == self.open_id), default=-1)
                closed = max((i for i, t in enumerate(real) if t == self.close_id), default=-1)
                if opened <= closed:
                    self.phase[r] = BEFORE
        self.low_entropy_run = torch.zeros(B, dtype=torch.long, device=device)
        self.thinking_steps = torch.zeros(B, dtype=torch.long, device=device)
        self.cold_stopped = torch.zeros(B, dtype=torch.bool, device=device)
        self.ended_thinking = torch.zeros(B, dtype=torch.bool, device=device)

    def row_info(self, row: int) -> dict[str, Any]:
        return {"thinking_steps": int(self.thinking_steps[row]), "ended_thinking": bool(self.ended_thinking[row]),
                "cold_stopped": bool(self.cold_stopped[row])}

    # --- one step -------------------------------------------------------------------

    def concept_step(self, ctx: StepContext, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(recorded token [B], concept embedding [B, d]) for every row."""
        cfg = self.config
        dist = filter_distribution(probs, cfg.top_k, cfg.top_p, cfg.min_p)
        if cfg.mode == "dirichlet":
            dist = dirichlet_resample(dist, cfg.dirichlet_gamma, ctx.generator)
        dist = keep_top(dist, cfg.max_topk)
        token = dist.top1
        if cfg.mode == "gumbel":
            noise = gumbel_noise(dist.values.shape, ctx.generator, dist.values.device)
            dist, token = gumbel_softmax_weights(dist, cfg.gumbel_tau, noise)
        return token, concept_token_embedding(dist, ctx.embed_tokens)

    def step(self, ctx: StepContext) -> StepDecision:
        cfg = self.config
        live = ~ctx.finished
        thinking = (self.phase == THINKING) & live
        soft = thinking | ((self.phase == ANSWER) & cfg.answer_phase_soft)
        probs = tempered_probs(ctx.logits, cfg.temperature)
        soft_token, concept = self.concept_step(ctx, probs)
        tokens = soft_token
        if bool((~soft & live).any()):
            discrete = choose_tokens(ctx.logits, ctx.sequences, self.sampling, self.warpers, ctx.generator)
            tokens = torch.where(soft, soft_token, discrete)

        if cfg.cold_stop:
            low = entropy(probs, cfg.entropy_normalised) < cfg.cold_stop_threshold
            self.low_entropy_run = torch.where(thinking & low, self.low_entropy_run + 1, 0)
            trigger = thinking & (self.low_entropy_run >= cfg.cold_stop_patience)
            tokens = torch.where(trigger, torch.full_like(tokens, self.close_id), tokens)
            self.cold_stopped |= trigger
            self.low_entropy_run = torch.where(trigger, 0, self.low_entropy_run)

        ends = thinking & (tokens == self.close_id)  # fed as its one-hot embedding
        self.thinking_steps += thinking.long()
        self.ended_thinking |= ends
        if self.open_id is not None:
            self.phase = torch.where((self.phase == BEFORE) & live & (tokens == self.open_id), THINKING, self.phase)
        self.phase = torch.where(ends, ANSWER, self.phase)
        return StepDecision(tokens=tokens, embeds=concept, use_embeds=soft & ~ends)


class ThinkingTracker(WrappingStrategy):
    """Wraps a discrete strategy and counts each row's steps up to (and including) the closing tag.

    Gives plain decoding the same `thinking_steps` / `ended_thinking` fields soft thinking reports.
    """

    def __init__(self, inner: InputStrategy, tokenizer: PreTrainedTokenizerBase, think_close: str = "</think>"):
        super().__init__(inner)
        self.close_id = single_token_id(tokenizer, think_close, "closing")

    def start(self, prompt_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        super().start(prompt_ids, attention_mask)
        self.thinking_steps = torch.zeros(prompt_ids.shape[0], dtype=torch.long, device=prompt_ids.device)
        self.ended_thinking = torch.zeros_like(self.thinking_steps, dtype=torch.bool)

    def step(self, ctx: StepContext) -> StepDecision:
        decision = self.inner.step(ctx)
        thinking = ~self.ended_thinking & ~ctx.finished
        self.thinking_steps += thinking.long()
        self.ended_thinking |= thinking & (decision.tokens == self.close_id)
        return decision

    def row_info(self, row: int) -> dict[str, Any]:
        return {**self.inner.row_info(row), "thinking_steps": int(self.thinking_steps[row]),
                "ended_thinking": bool(self.ended_thinking[row])}
