"""The one decode loop: batched, KV-cached, left-padded, with per-step input strategies.

    results = decode(model, tokenizer, prompts, DecodeConfig(max_new_tokens=64))

Every batch is tokenised with left padding; the prefill and every later step pass the attention
mask (extended by one column per step) and explicit position ids (counting real tokens only), so
a row's result does not depend on what else is in its batch. At each step the strategy decides
the recorded token and, optionally, an input embedding to feed instead of that token's embedding;
all rows go through one forward pass per step. Rows stop on eos (or an extra stop id) or at
`max_new_tokens`; a row whose logits turn non-finite stops with an error recorded in its result
while the other rows go on. One random generator, seeded once with `seed`, serves the whole call and
advances across batches: every row gets its own samples and noise (copies of one prompt in different
batches are independent draws), and a call is reproducible for a given seed and batch_size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from mentalese.decoding.sampling import SamplingConfig
from mentalese.decoding.strategies import DiscreteStrategy, InputStrategy, StepContext
from mentalese.errors import MentaleseError
from mentalese.models.cache_kwargs import cache_kwargs


@dataclass
class DecodeConfig(SamplingConfig):
    """Decoding settings: sampling (inherited) plus length, batching, seeding and stopping."""

    max_new_tokens: int = field(default=256, metadata={"help": "decode steps per row (latent steps count too)"})
    batch_size: int = field(default=32, metadata={"help": "rows per forward pass"})
    seed: int = field(default=0, metadata={
        "help": "seed of the sampling generator, set once per decode() call (it advances across batches)"})
    stop_token_ids: list[int] = field(default_factory=list, metadata={"help": "extra ids that end a row"})
    add_special_tokens: bool = field(default=True, metadata={"help": "let the tokenizer add BOS etc. to prompts"})

    def validate(self) -> None:
        super().validate()
        if self.max_new_tokens < 1:
            raise MentaleseError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise MentaleseError(f"batch_size must be >= 1, got {self.batch_size}")

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.do_sample, self.temperature, self.top_k, self.top_p, self.min_p)


@dataclass
class DecodeResult:
    token_ids: list[int]  # emitted tokens, eos included when produced
    text: str  # emitted tokens decoded, special tokens skipped
    num_tokens: int  # emitted tokens (what a reader sees)
    num_steps: int  # forward steps taken after the prefill, latent ones included
    stop_reason: str  # "eos" | "length" | "error"
    latency_s: float  # the batch's wall time divided by its rows
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # strategy extras (e.g. thinking steps)


def stop_ids_for(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, extra: Sequence[int] = ()) -> list[int]:
    """eos ids from the tokenizer and the model's generation config, plus `extra`."""
    ids = set(extra)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if gen_eos is not None:
        ids.update(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
    if not ids:
        raise MentaleseError("no stop token: the tokenizer has no eos and no stop_token_ids were given")
    return sorted(ids)


def context_length(model: PreTrainedModel) -> int | None:
    return getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)


def tokenize_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str] | Sequence[Sequence[int]], add_special_tokens: bool
) -> list[list[int]]:
    if len(prompts) == 0:
        raise MentaleseError("no prompts to decode")
    if isinstance(prompts[0], str):
        ids = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    else:
        ids = [list(p) for p in prompts]
    for i, row in enumerate(ids):
        if len(row) == 0:
            raise MentaleseError(f"prompt {i} is empty")
    return ids


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def decode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    config: DecodeConfig | None = None,
    strategy: InputStrategy | None = None,
    progress: bool = False,
) -> list[DecodeResult]:
    """Decode every prompt (text or token ids); results come back in prompt order."""
    config = config or DecodeConfig()
    config.validate()
    if tokenizer.pad_token_id is None:
        raise MentaleseError("tokenizer has no pad token; set one (e.g. tokenizer.pad_token = tokenizer.eos_token)")
    strategy = strategy or DiscreteStrategy()
    strategy.bind_sampling(config.sampling())
    rows = tokenize_prompts(tokenizer, prompts, config.add_special_tokens)
    ctx_len = context_length(model)
    for i, r in enumerate(rows):
        if ctx_len is not None and len(r) >= ctx_len:
            raise MentaleseError(f"prompt {i} has {len(r)} tokens, the model's context is {ctx_len}")
    stop_ids = stop_ids_for(model, tokenizer, config.stop_token_ids)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))  # similar lengths share a batch
    results: list[DecodeResult | None] = [None] * len(rows)
    batches = [order[i: i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="decode", unit="batch")
    device = model.get_input_embeddings().weight.device
    generator = torch.Generator(device=device).manual_seed(config.seed)  # once per call: batches draw on
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            batch_results = _decode_batch(model, tokenizer, [rows[i] for i in batch], config, strategy, stop_ids,
                                          ctx_len, generator)
            for i, res in zip(batch, batch_results):
                results[i] = res
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


def _decode_batch(model, tokenizer, rows, config, strategy, stop_ids, ctx_len, generator) -> list[DecodeResult]:
    start = time.perf_counter()
    device = model.get_input_embeddings().weight.device
    pad_id = tokenizer.pad_token_id
    ids, mask = left_pad(rows, pad_id, device)
    B = ids.shape[0]
    max_steps = config.max_new_tokens if ctx_len is None else min(config.max_new_tokens, ctx_len - ids.shape[1])
    embed = model.get_input_embeddings()
    stop = torch.tensor(stop_ids, device=device)
    strategy.start(ids, mask)

    position = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position, **cache_kwargs(model, cache),
                use_cache=True, output_hidden_states=strategy.hidden_needed(0), logits_to_keep=1)
    next_pos = position[:, -1] + 1

    sequences = ids
    emitted = torch.full((B, max_steps), pad_id, dtype=torch.long, device=device)
    n_emitted = torch.zeros(B, dtype=torch.long, device=device)
    n_steps = torch.zeros(B, dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    stopped = torch.zeros(B, dtype=torch.bool, device=device)  # ended on a stop id
    error_step = torch.full((B,), -1, dtype=torch.long, device=device)  # step of non-finite logits
    rows_idx = torch.arange(B, device=device)

    for step in range(max_steps):  # one host sync per step: the all-finished check
        logits = out.logits[:, -1].float()
        bad = ~torch.isfinite(logits).all(dim=-1) & ~finished
        error_step = torch.where(bad, step, error_step)
        finished = finished | bad
        logits = torch.where(bad[:, None], 0.0, logits)  # strategies never see NaN
        hidden = out.hidden_states[-1][:, -1] if strategy.hidden_needed(step) else None
        decision = strategy.step(StepContext(step, logits, hidden, sequences, finished, embed, generator))
        tokens = torch.where(finished, pad_id, decision.tokens)
        emit = ~finished if decision.emit is None else decision.emit & ~finished
        emitted[rows_idx, n_emitted] = torch.where(emit, tokens, emitted[rows_idx, n_emitted])
        n_emitted += emit.long()
        n_steps += (~finished).long()
        hit_stop = emit & torch.isin(tokens, stop)
        stopped |= hit_stop
        finished = finished | hit_stop
        if step == max_steps - 1 or bool(finished.all()):
            break
        sequences = torch.cat([sequences, tokens[:, None]], dim=1)
        inputs = embed(tokens)
        if decision.embeds is not None:
            use = decision.use_embeds if decision.use_embeds is not None else torch.ones_like(finished)
            inputs = torch.where((use & ~finished)[:, None], decision.embeds.to(inputs.dtype), inputs)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = model(inputs_embeds=inputs[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                    **cache_kwargs(model, cache), use_cache=True, output_hidden_states=strategy.hidden_needed(step + 1))
        next_pos = next_pos + 1

    latency = (time.perf_counter() - start) / B
    emitted_cpu, n_emitted_cpu, n_steps_cpu = emitted.cpu(), n_emitted.tolist(), n_steps.tolist()
    stopped_cpu, error_step_cpu = stopped.tolist(), error_step.tolist()
    results = []
    for r in range(B):
        toks = emitted_cpu[r, : n_emitted_cpu[r]].tolist()
        failed = error_step_cpu[r] >= 0
        results.append(DecodeResult(
            token_ids=toks,
            text=tokenizer.decode(toks, skip_special_tokens=True),
            num_tokens=len(toks),
            num_steps=n_steps_cpu[r],
            stop_reason="error" if failed else "eos" if stopped_cpu[r] else "length",
            latency_s=latency,
            error=f"non-finite logits at step {error_step_cpu[r]}" if failed else None,
            info=strategy.row_info(r),
        ))
    return results
