"""The decode loop against transformers' own `generate`, and its strategy/stopping/validation contract.

These are the library's acceptance criteria for `mentalese.decoding.decode`:
- greedy `decode` == `model.generate(do_sample=False)` with left padding, for GPT-2, Llama, Qwen2, Qwen3;
- a row's result does not depend on its batch (batch size, padding, length sorting);
- rows stop independently (eos / extra stop ids / non-finite logits);
- input strategies: feeding a token's own embedding through `StepDecision.embeds` changes nothing,
  feeding other embeddings matches an uncached full-forward reference, hidden rows are skipped;
- bad input raises `MentaleseError` before any forward pass.

The tiny models are built with a wider initialisation (`initializer_range=0.3`) than the default
0.02: at 0.02 a 2-layer random model just repeats its last prompt character, which would let
position-id, cache and padding bugs through unnoticed. `test_models_are_not_degenerate` guards that.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mentalese.decoding import (
    DecodeConfig,
    DecodeResult,
    DiscreteStrategy,
    InputStrategy,
    SamplingConfig,
    StepContext,
    StepDecision,
    decode,
)
from mentalese.errors import MentaleseError
from mentalese.models import build_tiny_model, char_tokenizer, load_model_and_tokenizer

ARCHS = ["gpt2", "llama", "qwen2", "qwen3"]
SEEDS = {"gpt2": 0, "llama": 0, "qwen2": 0, "qwen3": 0}
# Clearly unequal lengths (1, 5, 12, 30, 3 characters), deliberately not sorted by length.
PROMPTS = ["a", "hello", "x = 12 + 3 ?", "The quick brown fox jumps over", "Zz9"]
N_NEW = 16


# --- fixtures -----------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory):
    """Each tiny model is built (and saved) once for this module."""
    root = tmp_path_factory.mktemp("tiny_decoding")
    return {
        arch: build_tiny_model(arch, char_tokenizer(), root / arch, seed=SEEDS[arch], initializer_range=0.3)
        for arch in ARCHS
    }


@pytest.fixture(scope="module")
def loaded(model_paths):
    """arch -> (model, tokenizer), loaded through the user-facing from_pretrained path, once."""
    return {arch: load_model_and_tokenizer(path, dtype="float32", device="cpu") for arch, path in model_paths.items()}


@pytest.fixture(params=ARCHS)
def arch(request):
    return request.param


@pytest.fixture
def mt(loaded, arch):
    model, tok = loaded[arch]
    assert not model.training
    return model, tok


def greedy(model, tok, prompts=PROMPTS, **kw) -> list[DecodeResult]:
    return decode(model, tok, prompts, DecodeConfig(max_new_tokens=kw.pop("max_new_tokens", N_NEW), **kw))


def generate_new_tokens(model, tok, prompts, max_new_tokens, eos_ids=None) -> list[list[int]]:
    """New tokens of left-padded greedy `generate`, each row cut after its first eos.

    generate keeps a finished row in the batch and pads it; we check that padding and drop it.
    """
    tok = copy.deepcopy(tok)
    tok.padding_side = "left"
    enc = tok(list(prompts), padding=True, return_tensors="pt")
    kwargs = {} if eos_ids is None else {"eos_token_id": list(eos_ids)}
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, **kwargs)
    eos = set(eos_ids) if eos_ids is not None else {tok.eos_token_id}
    pad = model.generation_config.pad_token_id
    rows = []
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        assert all(t == pad for t in row[cut:]), f"generate did not pad after eos: {row}"
        rows.append(row[:cut])
    return rows


def truncate_at(tokens: list[int], stop: set[int]) -> list[int]:
    cut = next((i + 1 for i, t in enumerate(tokens) if t in stop), len(tokens))
    return tokens[:cut]


def reference_greedy(model, prompt_ids: list[int], steps: int, feed=None) -> list[int]:
    """Uncached oracle: full forward over the whole (embedded) sequence at every step, argmax.

    `feed(step, token, embedding_weight) -> [d]` gives the input embedding for the chosen token
    (default: the token's own embedding).
    """
    weight = model.get_input_embeddings().weight
    embs = [weight[t] for t in prompt_ids]
    out_tokens = []
    with torch.no_grad():
        for step in range(steps):
            logits = model(inputs_embeds=torch.stack(embs)[None]).logits[0, -1]
            t = int(logits.argmax())
            out_tokens.append(t)
            embs.append(weight[t] if feed is None else feed(step, t, weight))
    return out_tokens


class CountForwards:
    """Counts forward calls of a module (context manager)."""

    def __init__(self, module):
        self.module, self.calls = module, 0

    def __enter__(self):
        self.handle = self.module.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


# --- sanity of the test models --------------------------------------------------


def test_models_are_not_degenerate(mt):
    """The equivalence tests below only mean something if greedy output varies with position."""
    results = greedy(*mt)
    distinct = [len(set(r.token_ids)) for r in results]
    assert sum(distinct) / len(distinct) >= 5, distinct


# --- greedy == generate ----------------------------------------------------------


def test_greedy_matches_generate(mt):
    model, tok = mt
    ours = greedy(model, tok)
    theirs = generate_new_tokens(model, tok, PROMPTS, N_NEW)
    assert [r.token_ids for r in ours] == theirs
    for r in ours:
        assert r.stop_reason == ("eos" if r.token_ids[-1] == tok.eos_token_id else "length")
        assert r.num_tokens == len(r.token_ids) == r.num_steps
        assert r.text == tok.decode(r.token_ids, skip_special_tokens=True)
        assert r.error is None


def test_greedy_matches_generate_with_early_eos(mt):
    """Extra stop ids against generate's eos list: rows finish at different steps; generate pads them."""
    model, tok = mt
    base = greedy(model, tok)
    stop = base[3].token_ids[4]  # the long prompt's 5th token: ends that row (and maybe others) early
    ours = greedy(model, tok, stop_token_ids=[stop])
    theirs = generate_new_tokens(model, tok, PROMPTS, N_NEW, eos_ids=[tok.eos_token_id, stop])
    assert [r.token_ids for r in ours] == theirs
    assert ours[3].stop_reason == "eos" and len(ours[3].token_ids) <= 5
    assert len({len(r.token_ids) for r in ours}) > 1  # rows really finished at different steps


def test_natural_eos_row_matches_generate(loaded):
    """With these seeds the tiny Llama emits eos for prompt 'a' by itself: the eos path without extra ids."""
    model, tok = loaded["llama"]
    ours = greedy(model, tok)
    assert ours[0].stop_reason == "eos" and ours[0].token_ids[-1] == tok.eos_token_id
    assert len(ours[0].token_ids) < N_NEW
    assert "</s>" not in ours[0].text
    assert [r.token_ids for r in ours] == generate_new_tokens(model, tok, PROMPTS, N_NEW)


# --- batch independence ------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [32, 2, 3])
def test_batched_equals_one_by_one(mt, batch_size):
    model, tok = mt
    alone = [greedy(model, tok, [p])[0] for p in PROMPTS]
    batched = greedy(model, tok, batch_size=batch_size)
    assert len(batched) == len(PROMPTS)
    for i, (a, b) in enumerate(zip(alone, batched)):  # prompt order, not length order
        assert b.token_ids == a.token_ids, f"prompt {i} ({PROMPTS[i]!r})"
        assert (b.stop_reason, b.num_steps, b.text) == (a.stop_reason, a.num_steps, a.text)


def test_token_id_prompts_equal_text_prompts(mt):
    model, tok = mt
    ids = [tok(p, add_special_tokens=True)["input_ids"] for p in PROMPTS]
    assert [r.token_ids for r in greedy(model, tok, ids)] == [r.token_ids for r in greedy(model, tok)]


def test_duplicate_prompts_give_identical_rows(mt):
    model, tok = mt
    results = greedy(model, tok, ["hello", "The quick brown fox", "hello"], batch_size=2)
    assert results[0].token_ids == results[2].token_ids


# --- per-row stopping -----------------------------------------------------------------


def test_per_row_stop_token(mt):
    model, tok = mt
    base = greedy(model, tok)
    stop = base[0].token_ids[2]  # the 3rd token greedy produces for prompt 0
    assert stop != tok.eos_token_id
    results = greedy(model, tok, stop_token_ids=[stop])
    stops = {stop, tok.eos_token_id}

    first = results[0]
    assert first.stop_reason == "eos"
    assert first.token_ids[-1] == stop
    assert len(first.token_ids) <= 3 and first.num_steps == len(first.token_ids)
    for i, (b, r) in enumerate(zip(base, results)):
        expected = truncate_at(b.token_ids, stops)
        assert r.token_ids == expected, f"row {i}"
        assert r.stop_reason == ("eos" if expected[-1] in stops else "length"), f"row {i}"
        assert r.num_steps == len(expected)


def test_max_new_tokens_is_respected(mt):
    model, tok = mt
    for r, long in zip(greedy(model, tok, max_new_tokens=3), greedy(model, tok)):
        assert r.token_ids == long.token_ids[:3]
        assert r.num_steps == len(r.token_ids) <= 3
        assert r.stop_reason == ("eos" if r.token_ids[-1] == tok.eos_token_id else "length")


@pytest.mark.parametrize("do_sample", [False, True])
def test_non_finite_logits_stop_only_that_row(loaded, do_sample):
    """Row 1's logits become NaN at step 2 (an lm_head hook): that row errors, the others go on.

    Sampling too: a NaN row must not reach torch.multinomial (which would raise for the whole batch)."""
    model, tok = loaded["qwen2"]
    prompts = sorted(PROMPTS, key=len, reverse=True)  # batch row r == prompt r (the loop sorts by length)

    def run():
        return decode(model, tok, prompts, DecodeConfig(max_new_tokens=N_NEW, do_sample=do_sample, seed=5))

    base = run()
    calls = {"n": 0}

    def poison(module, args, output):
        step = calls["n"]  # call 0 is the prefill, i.e. the logits of step 0
        calls["n"] += 1
        if step == 2:
            output = output.clone()
            output[1] = float("nan")
        return output

    handle = model.get_output_embeddings().register_forward_hook(poison)
    try:
        results = run()
    finally:
        handle.remove()
    assert calls["n"] > 2
    bad = results[1]
    assert bad.stop_reason == "error"
    assert bad.error is not None and "non-finite" in bad.error
    assert bad.token_ids == base[1].token_ids[:2]
    assert bad.num_steps == 2
    for i in (0, 2, 3, 4):
        assert results[i].token_ids == base[i].token_ids, f"row {i}"
        assert results[i].stop_reason == base[i].stop_reason and results[i].error is None


# --- sampling --------------------------------------------------------------------------


def sample(model, tok, seed, **kw):
    cfg = DecodeConfig(max_new_tokens=20, do_sample=True, temperature=kw.pop("temperature", 1.0), seed=seed, **kw)
    return [r.token_ids for r in decode(model, tok, PROMPTS, cfg)]


def test_sampling_is_seeded(mt):
    model, tok = mt
    torch.manual_seed(123)
    a = sample(model, tok, seed=7)
    torch.manual_seed(456)  # the global RNG must not matter: the loop has its own generator
    b = sample(model, tok, seed=7)
    assert a == b
    assert sample(model, tok, seed=8) != a


def test_sampling_differs_from_greedy(mt):
    model, tok = mt
    assert sample(model, tok, seed=0) != [r.token_ids for r in greedy(model, tok, max_new_tokens=20)]


def test_top_k_1_sampling_equals_greedy(mt):
    model, tok = mt
    assert sample(model, tok, seed=3, top_k=1) == [r.token_ids for r in greedy(model, tok, max_new_tokens=20)]


def test_temperature_zero_sampling_is_greedy(mt):
    model, tok = mt
    assert sample(model, tok, seed=3, temperature=0.0) == [r.token_ids for r in greedy(model, tok, max_new_tokens=20)]


def test_warper_order():
    procs = SamplingConfig(do_sample=True, temperature=0.7, top_k=5, top_p=0.9, min_p=0.05).processors()
    assert [type(p).__name__ for p in procs] == [
        "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper",
    ]
    assert len(SamplingConfig(do_sample=True).processors()) == 0  # all off at the defaults
    assert [type(p).__name__ for p in SamplingConfig(do_sample=True, top_p=0.5).processors()] == ["TopPLogitsWarper"]


def test_decode_config_sampling_copies_fields():
    cfg = DecodeConfig(do_sample=True, temperature=0.5, top_k=3, top_p=0.8, min_p=0.1)
    assert cfg.sampling() == SamplingConfig(True, 0.5, 3, 0.8, 0.1)


# --- strategies ---------------------------------------------------------------------------


class OneHotGreedy(InputStrategy):
    """Greedy, feeding the chosen token explicitly as one-hot @ embedding matrix."""

    def step(self, ctx: StepContext) -> StepDecision:
        tokens = ctx.logits.argmax(dim=-1)
        weight = ctx.embed_tokens.weight
        onehot = F.one_hot(tokens, num_classes=weight.shape[0]).to(weight.dtype)
        return StepDecision(tokens=tokens, embeds=onehot @ weight)


class EmbedOwnToken(InputStrategy):
    """Greedy, feeding `ctx.embed_tokens(argmax)` through embeds."""

    def step(self, ctx: StepContext) -> StepDecision:
        tokens = ctx.logits.argmax(dim=-1)
        return StepDecision(tokens=tokens, embeds=ctx.embed_tokens(tokens))


def test_one_hot_strategy_equals_discrete(mt):
    model, tok = mt
    base = [r.token_ids for r in greedy(model, tok)]
    for strategy in (OneHotGreedy(), EmbedOwnToken()):
        out = decode(model, tok, PROMPTS, DecodeConfig(max_new_tokens=N_NEW, batch_size=2), strategy=strategy)
        assert [r.token_ids for r in out] == base, type(strategy).__name__


def test_discrete_strategy_object_equals_default(mt):
    model, tok = mt
    out = decode(model, tok, PROMPTS, DecodeConfig(max_new_tokens=N_NEW), strategy=DiscreteStrategy())
    assert [r.token_ids for r in out] == [r.token_ids for r in greedy(model, tok)]


def _mix(t: int, weight: torch.Tensor) -> torch.Tensor:
    """A 'soft' input: half the token's embedding plus half of the next id's."""
    return 0.5 * weight[t] + 0.5 * weight[(t + 1) % weight.shape[0]]


class MixedEmbeds(InputStrategy):
    """Records argmax but feeds `_mix` of it, on the rows in `rows` only (use_embeds)."""

    def __init__(self, rows):
        self.rows = rows

    def step(self, ctx):
        tokens = ctx.logits.argmax(dim=-1)
        weight = ctx.embed_tokens.weight
        embeds = torch.stack([_mix(int(t), weight) for t in tokens])
        use = torch.zeros_like(ctx.finished)
        use[self.rows] = True
        return StepDecision(tokens=tokens, embeds=embeds, use_embeds=use)


def test_embeds_are_fed_and_use_embeds_selects_rows(mt):
    """Row 0 gets mixed embeddings and must match an uncached full-forward oracle; other rows are plain greedy."""
    model, tok = mt
    prompts = sorted(PROMPTS, key=len, reverse=True)  # batch row r == prompt r
    base = greedy(model, tok, prompts)
    out = decode(model, tok, prompts, DecodeConfig(max_new_tokens=8), strategy=MixedEmbeds(rows=[0]))
    ids0 = tok(prompts[0])["input_ids"]
    expected0 = truncate_at(reference_greedy(model, ids0, 8, feed=lambda s, t, w: _mix(t, w)), {tok.eos_token_id})
    assert out[0].token_ids == expected0
    assert out[0].token_ids != base[0].token_ids[: len(out[0].token_ids)]  # the embeds really were used
    for i in range(1, len(prompts)):
        assert out[i].token_ids == base[i].token_ids[:8], f"row {i}"


def test_uncached_reference_equals_decode(mt):
    """The KV-cached loop against recomputing the whole sequence every step (single prompt, no padding)."""
    model, tok = mt
    for p in ("hello", "The quick brown fox jumps over"):
        ids = tok(p)["input_ids"]
        ref = truncate_at(reference_greedy(model, ids, 10), {tok.eos_token_id})
        assert greedy(model, tok, [p], max_new_tokens=10)[0].token_ids == ref


class HideFirst(DiscreteStrategy):
    """Greedy, but the first `k` steps are latent (emit=False)."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def step(self, ctx):
        decision = super().step(ctx)
        decision.emit = torch.full_like(ctx.finished, ctx.step >= self.k)
        return decision


def test_hidden_steps_are_not_emitted(mt):
    model, tok = mt
    base = greedy(model, tok)
    out = decode(model, tok, PROMPTS, DecodeConfig(max_new_tokens=N_NEW, batch_size=2), strategy=HideFirst(3))
    compared = 0
    for i, (b, r) in enumerate(zip(base, out)):
        assert r.num_tokens == r.num_steps - 3 == len(r.token_ids), f"row {i}"
        if tok.eos_token_id in b.token_ids[:3]:
            continue  # a hidden eos does not stop the row, so there is no plain run to compare with
        compared += 1
        assert r.num_steps == b.num_steps
        assert r.token_ids == b.token_ids[3:]
        assert r.text == tok.decode(b.token_ids[3:], skip_special_tokens=True)
        assert r.stop_reason == b.stop_reason
    assert compared >= 3


def test_hidden_eos_does_not_stop(loaded):
    """A stop token chosen on a hidden step is not emitted, so the row goes on."""
    model, tok = loaded["gpt2"]
    base = greedy(model, tok, ["hello"])[0]
    stop = base.token_ids[1]
    assert stop not in base.token_ids[3:] and stop not in base.token_ids[:1]
    out = decode(model, tok, ["hello"], DecodeConfig(max_new_tokens=N_NEW, stop_token_ids=[stop]), strategy=HideFirst(3))[0]
    assert out.stop_reason == "length" and out.token_ids == base.token_ids[3:]


class RecordHidden(DiscreteStrategy):
    needs_hidden_states = True

    def __init__(self):
        super().__init__()
        self.hidden: list[torch.Tensor] = []

    def step(self, ctx):
        assert ctx.hidden is not None
        self.hidden.append(ctx.hidden.clone())
        return super().step(ctx)


def test_hidden_states_are_the_last_layer_at_the_last_token(mt):
    model, tok = mt
    hidden_size = model.config.hidden_size

    strategy = RecordHidden()
    results = decode(model, tok, ["The quick brown"], DecodeConfig(max_new_tokens=4), strategy=strategy)
    inputs = tok(["The quick brown"], return_tensors="pt")
    with torch.no_grad():
        ref = model(**inputs, output_hidden_states=True).hidden_states[-1][:, -1]
    assert strategy.hidden[0].shape == (1, hidden_size)
    torch.testing.assert_close(strategy.hidden[0], ref, atol=1e-5, rtol=0)
    assert len(strategy.hidden) == results[0].num_steps

    # batched and padded: [B, d], and each row still matches its own unpadded forward
    prompts = sorted(PROMPTS, key=len, reverse=True)  # batch row r == prompt r
    strategy = RecordHidden()
    decode(model, tok, prompts, DecodeConfig(max_new_tokens=2), strategy=strategy)
    assert strategy.hidden[0].shape == (len(prompts), hidden_size)
    for i, p in enumerate(prompts):
        with torch.no_grad():
            row = model(**tok([p], return_tensors="pt"), output_hidden_states=True).hidden_states[-1][0, -1]
        torch.testing.assert_close(strategy.hidden[0][i], row, atol=1e-4, rtol=1e-4)


def test_strategy_without_hidden_gets_none(loaded):
    model, tok = loaded["llama"]
    seen = []

    class Spy(DiscreteStrategy):
        def step(self, ctx):
            seen.append(ctx.hidden)
            assert ctx.logits.dtype == torch.float32 and ctx.logits.shape == (len(PROMPTS), len(tok))
            return super().step(ctx)

    decode(model, tok, PROMPTS, DecodeConfig(max_new_tokens=2), strategy=Spy())
    assert seen and all(h is None for h in seen)


def test_start_and_row_info_are_called_per_batch(loaded):
    model, tok = loaded["gpt2"]

    class Info(DiscreteStrategy):
        def __init__(self):
            super().__init__()
            self.starts = []

        def start(self, prompt_ids, attention_mask):
            self.starts.append(tuple(prompt_ids.shape))
            assert prompt_ids.shape == attention_mask.shape
            assert bool((attention_mask[:, -1] == 1).all())  # left padded

        def row_info(self, row):
            return {"batch": len(self.starts), "row": row}

    strategy = Info()
    results = decode(model, tok, PROMPTS, DecodeConfig(max_new_tokens=2, batch_size=2), strategy=strategy)
    assert [shape[0] for shape in strategy.starts] == [2, 2, 1]
    # every result carries its own batch's row_info; each (batch, row) slot is used exactly once
    slots = sorted((r.info["batch"], r.info["row"]) for r in results)
    assert slots == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0)]
    for r, p in zip(results, PROMPTS):  # the row's prompt length fits the batch's padded width
        assert len(p) <= strategy.starts[r.info["batch"] - 1][1]


# --- validation: bad input raises before any forward pass ---------------------------------


def _no_pad(tok):
    tok = copy.deepcopy(tok)
    tok.pad_token = None
    assert tok.pad_token_id is None
    return tok


@pytest.mark.parametrize(
    "case",
    ["no prompts", "empty prompt", "empty id prompt", "no pad token", "too long", "too long ids"],
)
def test_bad_input_raises_before_work(loaded, case):
    model, tok = loaded["llama"]
    cfg = DecodeConfig(max_new_tokens=4)
    prompts = {
        "no prompts": [],
        "empty prompt": ["hello", ""],
        "empty id prompt": [[5, 6], []],
        "too long": ["hi", "a" * 600],
        "too long ids": [[5] * 512],
    }.get(case, ["hello"])
    if case == "no pad token":
        tok = _no_pad(tok)
    with CountForwards(model) as counter, pytest.raises(MentaleseError) as info:
        decode(model, tok, prompts, cfg)
    assert counter.calls == 0
    if case.startswith("too long"):
        assert "512" in str(info.value)
    if case == "no pad token":
        assert "pad" in str(info.value)


@pytest.mark.parametrize(
    "field, value",
    [
        ("temperature", -1.0),
        ("temperature", float("nan")),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", 1.0),
        ("min_p", -0.1),
        ("top_k", -1),
        ("max_new_tokens", 0),
        ("batch_size", 0),
    ],
)
def test_bad_config_raises(loaded, field, value):
    with pytest.raises(MentaleseError, match=field):
        DecodeConfig(**{field: value})
    # a config edited after construction is re-validated by decode, before any work
    model, tok = loaded["qwen3"]
    cfg = DecodeConfig(max_new_tokens=4)
    setattr(cfg, field, value)
    with CountForwards(model) as counter, pytest.raises(MentaleseError, match=field):
        decode(model, tok, ["hello"], cfg)
    assert counter.calls == 0


def test_prompt_just_inside_context_gets_remaining_steps(loaded):
    model, tok = loaded["llama"]
    r = decode(model, tok, [[5] * 510], DecodeConfig(max_new_tokens=8))[0]
    assert r.num_steps <= 2
