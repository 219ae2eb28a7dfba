"""SoftThinkingStrategy: equivalence with greedy, phases, Cold Stop, seeding and bad input.

Tiny random models with `<think>`/`</think>` in a character tokenizer, built with a wide
initialisation (0.3) so greedy output varies with the input (see test_decoding.py).
"""

from __future__ import annotations

import copy

import pytest
import torch

from mentalese.decoding import DecodeConfig, StepContext, decode
from mentalese.decoding.soft_thinking import ANSWER, BEFORE, THINKING, SoftThinkingConfig, SoftThinkingStrategy
from mentalese.errors import MentaleseError
from mentalese.models import build_tiny_model, char_tokenizer, load_model_and_tokenizer

ARCHS = ["gpt2", "llama", "qwen2"]
PROMPTS = ["a<think>", "hello<think>", "x = 12 + 3 ?<think>", "The quick brown fox jumps<think>", "Zz9<think>"]
N_NEW = 16


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_soft")
    tok = char_tokenizer(extra_tokens=["<think>", "</think>"])
    return {arch: load_model_and_tokenizer(build_tiny_model(arch, tok, root / arch, initializer_range=0.3),
                                           dtype="float32", device="cpu") for arch in ARCHS}


@pytest.fixture(params=ARCHS)
def mt(loaded, request):
    return loaded[request.param]


def soft(tok, **kw) -> SoftThinkingStrategy:
    kw.setdefault("cold_stop", False)
    return SoftThinkingStrategy(SoftThinkingConfig(**kw), tok)


def run(model, tok, strategy=None, prompts=PROMPTS, **kw):
    return decode(model, tok, prompts, DecodeConfig(max_new_tokens=kw.pop("max_new_tokens", N_NEW), **kw), strategy)


def tokens(results):
    return [r.token_ids for r in results]


# --- equivalence ------------------------------------------------------------------


def test_temperature_zero_soft_thinking_is_greedy(mt):
    model, tok = mt
    greedy = run(model, tok)
    assert len({tuple(t) for t in tokens(greedy)}) > 1, "degenerate test model"
    assert tokens(run(model, tok, soft(tok, temperature=0))) == tokens(greedy)


def test_max_topk_one_is_greedy_and_so_is_the_official_answer_bug(mt):
    model, tok = mt
    greedy = tokens(run(model, tok))
    assert tokens(run(model, tok, soft(tok, max_topk=1))) == greedy
    assert tokens(run(model, tok, soft(tok, max_topk=1, answer_phase_soft=True))) == greedy


def test_soft_inputs_change_the_trace(mt):
    model, tok = mt
    vanilla = soft(tok, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    assert tokens(run(model, tok, vanilla)) != tokens(run(model, tok))


@pytest.mark.parametrize("mode", ["vanilla", "gumbel"])
def test_batched_equals_one_by_one(loaded, mode):
    """In float64: soft inputs carry float32 rounding differences between batch shapes forward and
    these random models amplify them (measured on this Llama: 7e-6 at step 0, 0.35 in logits by step 6),
    whereas one-hot inputs reset them at every step."""
    model, tok = loaded["llama"]
    model = copy.deepcopy(model).double()
    batched = run(model, tok, soft(tok, mode=mode), batch_size=len(PROMPTS))
    if mode == "vanilla":
        single = [run(model, tok, soft(tok), prompts=[p])[0] for p in PROMPTS]
        assert tokens(batched) == tokens(single)
    else:  # a stochastic row depends on the batch's random stream, but not on its padding or order
        assert tokens(run(model, tok, soft(tok, mode=mode), batch_size=len(PROMPTS))) == \
            tokens(batched)


@pytest.mark.parametrize("mode", ["dirichlet", "gumbel"])
def test_stochastic_modes_are_seeded(loaded, mode):
    model, tok = loaded["gpt2"]
    first = tokens(run(model, tok, soft(tok, mode=mode), seed=3))
    assert tokens(run(model, tok, soft(tok, mode=mode), seed=3)) == first
    assert any(tokens(run(model, tok, soft(tok, mode=mode), seed=s)) != first for s in (4, 5, 6))


# --- phases and Cold Stop, step by step on hand-made logits --------------------------


def context(tok, step, logits, sequences, finished=None):
    embed = torch.nn.Embedding(len(tok), 4)
    finished = torch.zeros(logits.shape[0], dtype=torch.bool) if finished is None else finished
    return StepContext(step, logits, None, sequences, finished, embed, torch.Generator().manual_seed(0))


def one_hot_logits(tok, token_ids, scale=50.0):
    logits = torch.zeros(len(token_ids), len(tok))
    logits[torch.arange(len(token_ids)), torch.tensor(token_ids)] = scale
    return logits


def test_phases_per_row():
    tok = char_tokenizer(extra_tokens=["<think>", "</think>"])
    open_id, close_id, a, b = (tok.convert_tokens_to_ids(t) for t in ("<think>", "</think>", "a", "b"))
    strategy = soft(tok)
    prompts = torch.tensor([[a, open_id], [a, b], [open_id, close_id]])  # thinking, before, closed: before
    strategy.start(prompts, torch.ones_like(prompts))
    assert strategy.phase.tolist() == [THINKING, BEFORE, BEFORE]
    d = strategy.step(context(tok, 0, one_hot_logits(tok, [close_id, open_id, b]), prompts))
    assert d.tokens.tolist() == [close_id, open_id, b]
    assert d.use_embeds.tolist() == [False, False, False]  # </think> and discrete tokens go in one-hot
    assert strategy.phase.tolist() == [ANSWER, THINKING, BEFORE]
    d = strategy.step(context(tok, 1, one_hot_logits(tok, [a, a, a]), prompts))
    assert d.use_embeds.tolist() == [False, True, False]
    assert strategy.row_info(0) == {"thinking_steps": 1, "ended_thinking": True, "cold_stopped": False}
    assert strategy.row_info(1)["thinking_steps"] == 1


def test_cold_stop_replaces_the_token_after_patience_low_entropy_steps():
    tok = char_tokenizer(extra_tokens=["<think>", "</think>"])
    open_id, close_id, a = (tok.convert_tokens_to_ids(t) for t in ("<think>", "</think>", "a"))
    strategy = soft(tok, cold_stop=True, cold_stop_patience=3, cold_stop_threshold=0.01)
    prompts = torch.tensor([[a, open_id], [a, open_id]])
    strategy.start(prompts, torch.ones_like(prompts))
    confident = one_hot_logits(tok, [a, a], scale=50.0)
    confident[1] = 0.0  # row 1: uniform, high entropy; never stops
    recorded = [strategy.step(context(tok, s, confident, prompts)).tokens.tolist() for s in range(3)]
    assert recorded[:2] == [[a, recorded[0][1]]] * 2 and recorded[2][0] == close_id
    assert strategy.row_info(0)["cold_stopped"] and not strategy.row_info(1)["cold_stopped"]
    assert strategy.phase.tolist() == [ANSWER, THINKING]


def test_finished_rows_with_zeroed_logits_are_harmless():
    tok = char_tokenizer(extra_tokens=["<think>", "</think>"])
    a, open_id = tok.convert_tokens_to_ids("a"), tok.convert_tokens_to_ids("<think>")
    for mode in ("vanilla", "dirichlet", "gumbel"):
        strategy = soft(tok, mode=mode, cold_stop=True, cold_stop_patience=1)
        prompts = torch.tensor([[a, open_id], [a, open_id]])
        strategy.start(prompts, torch.ones_like(prompts))
        logits = torch.zeros(2, len(tok))
        d = strategy.step(context(tok, 0, logits, prompts, finished=torch.tensor([True, False])))
        assert torch.isfinite(d.embeds).all()


def test_nonfinite_logits_fail_one_row_only(loaded):
    model, tok = loaded["gpt2"]
    calls = {"n": 0}

    def poison(module, args, output):
        calls["n"] += 1
        if calls["n"] == 3:
            output = output.clone()
            output[1] = float("nan")
            return output

    handle = model.get_output_embeddings().register_forward_hook(poison)
    try:
        results = run(model, tok, soft(tok, mode="gumbel"), prompts=PROMPTS[:3], batch_size=3)
    finally:
        handle.remove()
    assert [r.stop_reason == "error" for r in results] == [False, True, False]
    assert results[0].num_tokens == N_NEW or results[0].stop_reason == "eos"


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    {"top_p": 0.0}, {"top_p": 1.5}, {"min_p": 1.0}, {"min_p": -0.1}, {"max_topk": 0}, {"gumbel_tau": 0.0},
    {"dirichlet_gamma": -1.0}, {"cold_stop_patience": -1}, {"temperature": float("nan")}, {"mode": "beam"},
    {"top_k": -1}, {"think_close": ""},
])
def test_invalid_settings_raise(bad):
    with pytest.raises(MentaleseError):
        SoftThinkingConfig(**bad)


def test_missing_closing_tag_is_a_clear_error():
    with pytest.raises(MentaleseError, match="</think>"):
        SoftThinkingStrategy(SoftThinkingConfig(), char_tokenizer())
    tok = char_tokenizer(extra_tokens=["<end>"])
    strategy = SoftThinkingStrategy(SoftThinkingConfig(think_open="", think_close="<end>"), tok)
    assert strategy.close_id == tok.convert_tokens_to_ids("<end>")


def test_empty_and_too_long_prompts_fail_before_work(loaded):
    model, tok = loaded["gpt2"]
    with pytest.raises(MentaleseError, match="empty"):
        run(model, tok, soft(tok), prompts=["a<think>", ""])
    with pytest.raises(MentaleseError, match="context"):
        run(model, tok, soft(tok), prompts=["a" * 600 + "<think>"])
