"""Thought traces: what a latent method fed at its thought steps, recorded from the one decode loop, changed
by an intervention, fed back through the same loop, and scored by one teacher-forced pass.

A trace is one example's input sequence up to its answer, with the thoughts as input embeddings:

    prompt_ids + open_ids | thoughts [n, d] | close_ids      then the answer (decoded or teacher-forced)

    CODI / Coconut   open <bot>               thoughts = projected hidden states      close <eot>
    soft thinking    open = tokens before     thoughts = concept-token embeddings     close </think>
                     thinking (often none)
    BoLT latent      (the prompt ends with    thoughts = the generated thought tokens, close <|end_of_latent|>
                     SOL <|prior|>)           embedded

- `TraceRecorder(inner)` wraps any InputStrategy and records, per row, each step's token, whether the step
  fed an embedding of its own (`StepDecision.embeds`) and whether the token was emitted; `decode()` hands
  the record back in each result's `info` (so rows come back in prompt order).
- `trace_from_record` cuts a recorded row into a `ThoughtTrace` by its method's span rule: "marked" (the
  steps between the opening and the closing token: CODI and Coconut thoughts, BoLT's thought tokens,
  embedded) or "embeds" (the first run of steps that fed their own embeddings: soft thinking's concept tokens).
- `ReplayThoughts(traces)` is an InputStrategy that feeds each row's open tokens, thoughts and close tokens
  (nothing emitted), then decodes the answer with the decode config's sampling. With the recorded traces
  it reproduces the original decode token for token (tests/test_thought_interventions.py).
- `score_traces` runs [prompt, open, thoughts, close, gold answer] once, teacher-forced, with eager
  attention: the gold answer's log-likelihood, and the attention mass its predicting positions put on the
  thought positions (and on as many prompt positions, the reference), per layer.
"""

from __future__ import annotations

from collections import defaultdict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from mentalese.decoding.loop import left_pad
from mentalese.decoding.sampling import SamplingConfig
from mentalese.decoding.strategies import (
    DiscreteStrategy, InputStrategy, StepContext, StepDecision, WrappingStrategy,
)
from mentalese.errors import MentaleseError

RECORD_KEY = "recorded_steps"  # DecodeResult.info key of a TraceRecorder row (popped by the caller)
SPAN_RULES = ("embeds", "marked")


@dataclass
class ThoughtTrace:
    prompt_ids: list[int]
    open_ids: list[int]  # tokens fed after the prompt, before the thoughts
    thoughts: torch.Tensor  # [n, d] input embeddings fed at the thought steps (embedding dtype, CPU)
    close_ids: list[int]  # tokens fed after the thoughts, before the answer
    thought_token_ids: list[int]  # the token recorded at each thought step (BoLT: the thought itself; soft
    #                               thinking: the argmax; CODI/Coconut: a placeholder such as <bot>)
    answer_ids: list[int] = field(default_factory=list)  # the original decode's answer (emitted after close)
    prompt_markers: int = 0  # trailing prompt tokens that are markers, not question (BoLT: SOL <|prior|>)

    @property
    def num_thoughts(self) -> int:
        return int(self.thoughts.shape[0])

    @property
    def schedule_length(self) -> int:
        """Decode steps before the first answer token."""
        return len(self.open_ids) + self.num_thoughts + len(self.close_ids)

    def with_thoughts(self, thoughts: torch.Tensor, token_ids: Sequence[int] | None = None) -> ThoughtTrace:
        """This trace with other thoughts (and their recorded tokens); the answer is no longer known."""
        if token_ids is None:
            token_ids = self.thought_token_ids
        if thoughts.ndim != 2 or len(token_ids) != thoughts.shape[0]:
            raise MentaleseError(f"thoughts must be [n, d] with one token id each, got {tuple(thoughts.shape)} "
                                 f"and {len(token_ids)} ids")
        return replace(self, thoughts=thoughts, thought_token_ids=list(token_ids), answer_ids=[])


# --- recording the original decode -----------------------------------------------------------------------

@dataclass
class RecordedRow:
    tokens: list[int]  # one per step the row took
    fed_own: list[bool]  # the step fed the strategy's embedding instead of its token's
    emitted: list[bool]
    embeds: list[torch.Tensor]  # [d] for each step with fed_own, in order


class TraceRecorder(WrappingStrategy):
    """Delegates everything to `inner` and records what each row was fed (see the module docstring)."""

    def __init__(self, inner: InputStrategy, embed_dtype: torch.dtype):
        super().__init__(inner)
        self.embed_dtype = embed_dtype

    def start(self, prompt_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        super().start(prompt_ids, attention_mask)
        self._steps: list[tuple] = []

    def step(self, ctx: StepContext) -> StepDecision:
        decision = self.inner.step(ctx)
        live = ~ctx.finished
        if decision.embeds is None:
            fed_own = torch.zeros_like(live)
        else:
            fed_own = (torch.ones_like(live) if decision.use_embeds is None else decision.use_embeds) & live
        emit = live if decision.emit is None else decision.emit & live
        embeds = decision.embeds.detach().to(self.embed_dtype).cpu() if bool(fed_own.any()) else None
        self._steps.append((decision.tokens.cpu(), fed_own.cpu(), emit.cpu(), live.cpu(), embeds))
        return decision

    def row_info(self, row: int) -> dict[str, Any]:
        taken = [s for s in self._steps if bool(s[3][row])]
        record = RecordedRow(tokens=[int(s[0][row]) for s in taken], fed_own=[bool(s[1][row]) for s in taken],
                             emitted=[bool(s[2][row]) for s in taken],
                             embeds=[s[4][row] for s in taken if bool(s[1][row])])
        return {**self.inner.row_info(row), RECORD_KEY: record}


def trace_from_record(record: RecordedRow, prompt_ids: list[int], rule: str, close_ids: list[int],
                      stop_ids: Sequence[int], embed_tokens, prompt_markers: int = 0,
                      open_id: int | None = None) -> ThoughtTrace:
    """Cut a recorded row into open / thoughts / close / answer.

    rule "embeds": the thoughts are the first run of steps that fed their own embeddings (soft thinking).
    rule "marked": the thoughts are the steps after the row's first `open_id` token (from the first step when
    None: BoLT, whose prompt ends with the markers) up to the first `close_ids[0]` token (CODI, Coconut, BoLT);
    a step that fed no embedding of its own counts with its token's (`embed_tokens`: ids -> [n, d]).
    `close_ids` close the thoughts; they are appended when the row never closed them (it ran out of steps or
    emitted a stop id, which is not a thought)."""
    if rule not in SPAN_RULES:
        raise MentaleseError(f"span rule must be one of {', '.join(SPAN_RULES)}, got {rule!r}")
    toks, n_steps, stops = record.tokens, len(record.tokens), set(stop_ids)
    is_stop = [t in stops and e for t, e in zip(toks, record.emitted)]
    own = iter(record.embeds)
    fed = [next(own) if f else None for f in record.fed_own]  # each step's own embedding, or None
    if rule == "embeds":
        if any(record.fed_own):
            start = record.fed_own.index(True)
        else:  # no thought fed: an empty thought if the row closed it right away, else none at all
            start = toks.index(close_ids[0]) if close_ids[0] in toks else n_steps
        end = start
        while end < n_steps and record.fed_own[end] and not is_stop[end]:
            end += 1
        closed = end < n_steps and not is_stop[end]
    else:
        start = 0 if open_id is None else next((i + 1 for i, t in enumerate(toks) if t == open_id), n_steps)
        end = start
        while end < n_steps and toks[end] != close_ids[0] and not is_stop[end]:
            end += 1
        closed = end < n_steps and toks[end] == close_ids[0]
    if start == n_steps:  # never started thinking: everything emitted is the answer
        return ThoughtTrace(list(prompt_ids), [], torch.zeros(0, 0), [], [],
                            [t for t, e in zip(toks, record.emitted) if e], prompt_markers)
    rows = [fed[i] for i in range(start, end)]
    missing = [i for i in range(start, end) if fed[i] is None]
    if missing:
        for i, e in zip(missing, embed_tokens([toks[i] for i in missing])):
            rows[i - start] = e
    thoughts = torch.stack(rows) if rows else torch.zeros(0, 0)
    return ThoughtTrace(
        prompt_ids=list(prompt_ids), open_ids=toks[:start], thoughts=thoughts,
        close_ids=[toks[end]] if closed else list(close_ids), thought_token_ids=toks[start:end],
        answer_ids=[t for t, e in zip(toks[end + 1:], record.emitted[end + 1:]) if e] if closed else [],
        prompt_markers=prompt_markers)


# --- feeding traces back through the decode loop ---------------------------------------------------------

class ReplayThoughts(DiscreteStrategy):
    """Per row: its trace's open tokens, thoughts (as input embeddings) and close tokens, none emitted; then
    answer tokens with the decode config's sampling. Decode the traces' `prompt_ids`; each batch row is
    matched to its trace by prompt (identical prompts in prompt order), and `row_info` names the trace used
    (`trace_index`), which `replay` checks."""

    def __init__(self, traces: Sequence[ThoughtTrace], sampling: SamplingConfig | None = None):
        super().__init__(sampling)
        self.traces = list(traces)
        self._queue: dict[tuple, deque] = defaultdict(deque)
        for i, tr in enumerate(self.traces):
            self._queue[tuple(tr.prompt_ids)].append(i)

    def start(self, prompt_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        rows = [tuple(t for t, m in zip(ids, mask) if m) for ids, mask in zip(prompt_ids.tolist(),
                                                                                attention_mask.tolist())]
        if any(not self._queue[r] for r in rows):
            raise MentaleseError("ReplayThoughts got a prompt that is not one of its traces' prompt_ids")
        self.batch = [self._queue[r].popleft() for r in rows]
        traces = [self.traces[i] for i in self.batch]
        B, device = len(traces), prompt_ids.device
        L = max(tr.schedule_length for tr in traces)
        d = max((tr.thoughts.shape[1] for tr in traces if tr.num_thoughts), default=1)
        dtype = next((tr.thoughts.dtype for tr in traces if tr.num_thoughts), torch.float32)
        self.tokens = torch.zeros(B, L, dtype=torch.long)
        self.scheduled = torch.zeros(B, L, dtype=torch.bool)
        self.is_thought = torch.zeros(B, L, dtype=torch.bool)
        self.embeds = torch.zeros(B, L, d, dtype=dtype)
        for r, tr in enumerate(traces):
            o, n = len(tr.open_ids), tr.num_thoughts
            ids = tr.open_ids + tr.thought_token_ids + tr.close_ids
            self.tokens[r, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            self.scheduled[r, :len(ids)] = True
            self.is_thought[r, o:o + n] = True
            if n:
                self.embeds[r, o:o + n] = tr.thoughts
        self.tokens, self.scheduled = self.tokens.to(device), self.scheduled.to(device)
        self.is_thought, self.embeds = self.is_thought.to(device), self.embeds.to(device)

    def step(self, ctx: StepContext) -> StepDecision:
        k = ctx.step
        if k >= self.tokens.shape[1]:
            return super().step(ctx)
        scheduled, tokens = self.scheduled[:, k], self.tokens[:, k]
        if bool((~scheduled & ~ctx.finished).any()):
            tokens = torch.where(scheduled, tokens, super().step(ctx).tokens)
        return StepDecision(tokens=tokens, embeds=self.embeds[:, k], use_embeds=self.is_thought[:, k], emit=~scheduled)

    def row_info(self, row: int) -> dict[str, Any]:
        return {"trace_index": self.batch[row]}


def replay(model, tokenizer, traces: Sequence[ThoughtTrace], config, progress: bool = False) -> list:
    """decode() of the traces with `ReplayThoughts`; results in trace order, emitting the answers only."""
    from mentalese.decoding.loop import decode

    results = decode(model, tokenizer, [tr.prompt_ids for tr in traces], config, ReplayThoughts(traces),
                     progress=progress)
    if [r.info.get("trace_index") for r in results] != list(range(len(traces))):
        raise MentaleseError("ReplayThoughts matched a batch row to the wrong trace")
    return results


# --- interventions: new traces from recorded ones ----------------------------------------------------------

def derangement(n: int, seed: int) -> list[int]:
    """A random permutation without fixed points (Sattolo's algorithm: one cycle through all n)."""
    if n < 2:
        raise MentaleseError(f"swapping thoughts needs at least 2 examples, got {n}")
    perm = list(range(n))
    rng = torch.Generator().manual_seed(seed)
    for i in range(n - 1, 0, -1):
        j = int(torch.randint(0, i, (1,), generator=rng))
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def swapped(traces: Sequence[ThoughtTrace], perm: Sequence[int]) -> list[ThoughtTrace]:
    """Example i gets example perm[i]'s thoughts (its own prompt, markers and gold answer)."""
    return [tr.with_thoughts(traces[j].thoughts, traces[j].thought_token_ids) for tr, j in zip(traces, perm)]


def zeroed(traces: Sequence[ThoughtTrace]) -> list[ThoughtTrace]:
    return [tr.with_thoughts(torch.zeros_like(tr.thoughts)) for tr in traces]


def noised(traces: Sequence[ThoughtTrace], seed: int) -> list[ThoughtTrace]:
    """Each thought replaced by Gaussian noise scaled to that thought's L2 norm."""
    rng = torch.Generator().manual_seed(seed)
    out = []
    for tr in traces:
        t = tr.thoughts.float()
        g = torch.randn(t.shape, generator=rng)
        g = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12) * t.norm(dim=-1, keepdim=True)
        out.append(tr.with_thoughts(g.to(tr.thoughts.dtype)))
    return out


def truncated(traces: Sequence[ThoughtTrace], j: int) -> list[ThoughtTrace]:
    """The first j thoughts of each example (all of them when it has fewer)."""
    if j < 0:
        raise MentaleseError(f"truncation length must be >= 0, got {j}")
    return [tr.with_thoughts(tr.thoughts[:j], tr.thought_token_ids[:j]) for tr in traces]


# --- teacher-forced scoring ----------------------------------------------------------------------------

@contextmanager
def eager_attention(model):
    """Switch the model to eager attention (the implementation that returns attention probabilities)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT
    before = base.config._attn_implementation
    if before != "eager":
        base.set_attn_implementation("eager")
        if base.config._attn_implementation != "eager":
            raise MentaleseError(f"{type(base).__name__} cannot switch to eager attention (needed for attentions)")
    try:
        yield
    finally:
        if before != "eager":
            base.set_attn_implementation(before)


def attention_mass(attentions: Sequence[torch.Tensor], queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """[B, layers]: per layer, the attention probability the `queries` positions put on the `keys` positions,
    summed over keys, averaged over heads and query positions. attentions: per layer [B, H, T, T];
    queries, keys: [B, T] bool. Rows without queries or keys give NaN."""
    out = []
    for a in attentions:
        on_keys = torch.where(keys[:, None, None, :], a.float(), 0.0).sum(-1).mean(1)  # [B, T]
        mass = torch.where(queries, on_keys, 0.0).sum(-1) / queries.sum(-1)
        out.append(torch.where(keys.any(-1), mass, torch.nan))
    return torch.stack(out, dim=1)


@dataclass
class TraceScore:
    answer_logprob: float  # sum of log p(gold token) over the gold answer
    answer_tokens: int
    thought_attention: list[float] | None  # per layer; None without thoughts
    reference_attention: list[float] | None  # per layer, on `reference_positions` prompt positions
    reference_positions: int


def _layout(tr: ThoughtTrace, gold: list[int]) -> tuple[list[int], list[str]]:
    """Token ids (0 at thought slots) and each position's role: prompt, marker, thought, answer."""
    ids = tr.prompt_ids + tr.open_ids + [0] * tr.num_thoughts + tr.close_ids + gold
    q = len(tr.prompt_ids) - tr.prompt_markers
    roles = (["prompt"] * q + ["marker"] * (tr.prompt_markers + len(tr.open_ids)) + ["thought"] * tr.num_thoughts
             + ["marker"] * len(tr.close_ids) + ["answer"] * len(gold))
    return ids, roles


@torch.no_grad()
def score_traces(model, traces: Sequence[ThoughtTrace], gold_ids: Sequence[list[int]], batch_size: int = 8,
                 attention: bool = True) -> list[TraceScore]:
    """One teacher-forced pass per batch over [prompt, open, thoughts, close, gold] (left-padded, masked, positions
    counting real tokens). Attention queries: the positions that predict the gold tokens (the last marker
    and every gold token but the last); reference keys: the last n prompt positions before the markers."""
    if any(not g for g in gold_ids):
        raise MentaleseError("every example needs a non-empty gold answer to score")
    embed = model.get_input_embeddings()
    device = embed.weight.device
    was_training = model.training
    model.eval()
    scores: list[TraceScore] = []
    try:
        with eager_attention(model) if attention else _nothing():
            for s in range(0, len(traces), batch_size):
                scores += _score_batch(model, embed, traces[s:s + batch_size], gold_ids[s:s + batch_size],
                                       device, attention)
    finally:
        model.train(was_training)
    return scores


@contextmanager
def _nothing():
    yield


def _score_batch(model, embed, traces, golds, device, attention: bool) -> list[TraceScore]:
    layouts = [_layout(tr, list(g)) for tr, g in zip(traces, golds)]
    ids, mask = left_pad([ids for ids, _ in layouts], 0, device)
    B, T = ids.shape
    roles = [["pad"] * (T - len(r)) + r for _, r in layouts]
    inputs = embed(ids)
    for b, tr in enumerate(traces):
        pos = [t for t, r in enumerate(roles[b]) if r == "thought"]
        if pos:
            inputs[b, pos] = tr.thoughts.to(device=device, dtype=inputs.dtype)
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(inputs_embeds=inputs, attention_mask=mask, position_ids=position, use_cache=False,
                output_attentions=attention)
    logprobs = out.logits.float().log_softmax(-1)

    def role_mask(name: str) -> torch.Tensor:
        return torch.tensor([[r == name for r in row] for row in roles], device=device)

    gold = role_mask("answer")
    predicting = torch.zeros_like(gold)
    predicting[:, :-1] = gold[:, 1:]  # position t predicts token t+1
    target = logprobs[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    answer_logprob = torch.where(gold[:, 1:], target, 0.0).sum(-1)
    thought, reference = role_mask("thought"), torch.zeros_like(gold)
    ref_counts = []
    for b in range(B):
        prompt_pos = [t for t, r in enumerate(roles[b]) if r == "prompt"]
        chosen = prompt_pos[len(prompt_pos) - min(len(prompt_pos), int(thought[b].sum())):]
        reference[b, chosen] = True
        ref_counts.append(len(chosen))
    if attention:
        if not out.attentions:
            raise MentaleseError("the model returned no attentions with eager attention")
        on_thoughts = attention_mass(out.attentions, predicting, thought).cpu()
        on_reference = attention_mass(out.attentions, predicting, reference).cpu()
    results = []
    for b in range(B):
        has = attention and bool(thought[b].any())
        results.append(TraceScore(
            answer_logprob=float(answer_logprob[b]), answer_tokens=int(gold[b].sum()),
            thought_attention=on_thoughts[b].tolist() if has else None,
            reference_attention=on_reference[b].tolist() if has and ref_counts[b] else None,
            reference_positions=ref_counts[b]))
    return results
