"""decode.* owns token sampling: every strategy honours do_sample/temperature/top_k/top_p/min_p or refuses them.

Honoured is shown by equivalences (top-k 1 or temperature 0 sampling == greedy; soft thinking's answer
phase == plain decoding after `</think>`, token for token) and by a stochastic setting changing the output.
"""

from __future__ import annotations

import pytest
import torch

from mentalese.commands.cli import main
from mentalese.config import load_config, read_yaml
from mentalese.decoding import DecodeConfig, DiscreteStrategy, InputStrategy, SamplingConfig, StepDecision, decode
from mentalese.decoding.soft_thinking import SoftThinkingConfig, SoftThinkingStrategy, ThinkingTracker
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import EvalConfig
from mentalese.models import build_tiny_model, char_tokenizer, load_model_and_tokenizer
from mentalese.recipes import list_recipes, resolve_recipe

PROMPTS = ["a<think>", "hello<think>", "x = 12 + 3 ?<think>", "The quick fox<think>"]
N_NEW = 12
DETERMINISTIC = [{}, {"do_sample": True, "temperature": 0.0}, {"do_sample": True, "top_k": 1}]
STOCHASTIC = [{"do_sample": True, "temperature": 1.5}, {"do_sample": True, "top_k": 3},
              {"do_sample": True, "top_p": 0.5}, {"do_sample": True, "min_p": 0.3}]

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def mt(tmp_path_factory):
    tok = char_tokenizer(extra_tokens=["<think>", "</think>"])
    path = build_tiny_model("gpt2", tok, tmp_path_factory.mktemp("owner") / "m", initializer_range=0.3)
    model, tok = load_model_and_tokenizer(path, dtype="float32", device="cpu")
    return model.double(), tok  # float64: prefilled and step-fed </think> give the same logits


def ids(tok, prompts=PROMPTS):
    return [tok(p)["input_ids"] for p in prompts]


def run(model, tok, rows, strategy=None, max_new_tokens=N_NEW, seed=0, **sampling):
    cfg = DecodeConfig(max_new_tokens=max_new_tokens, batch_size=len(rows), seed=seed, **sampling)
    return [r.token_ids for r in decode(model, tok, rows, cfg, strategy)]


# --- the settings themselves ---------------------------------------------------------------


@pytest.mark.parametrize("setting", ["temperature=0.7", "top_k=5", "top_p=0.9", "min_p=0.1"])
def test_shaping_without_do_sample_is_refused(setting):
    with pytest.raises(MentaleseError, match="do_sample"):
        load_config(EvalConfig, None, [f"decode.{setting}"])
    load_config(EvalConfig, None, [f"decode.{setting}", "decode.do_sample=true"])
    DecodeConfig(temperature=0.0)  # temperature 0 is greedy itself


# --- plain decoding ------------------------------------------------------------------------


def test_explicit_discrete_strategy_takes_decode_sampling(mt):
    model, tok = mt
    rows = ids(tok)
    greedy = run(model, tok, rows)
    for kw in DETERMINISTIC:
        assert run(model, tok, rows, DiscreteStrategy(), **kw) == greedy
    for kw in STOCHASTIC:
        default = run(model, tok, rows, None, seed=1, **kw)
        assert default != greedy, kw
        assert run(model, tok, rows, DiscreteStrategy(), seed=1, **kw) == default
        assert run(model, tok, rows, ThinkingTracker(DiscreteStrategy(), tok), seed=1, **kw) == default


def test_discrete_strategy_built_with_other_sampling_is_refused(mt):
    model, tok = mt
    with pytest.raises(MentaleseError, match="decode"):
        run(model, tok, ids(tok), DiscreteStrategy(SamplingConfig(do_sample=True, temperature=0.5)))
    same = SamplingConfig(do_sample=True, top_k=1)
    assert run(model, tok, ids(tok), DiscreteStrategy(same), do_sample=True, top_k=1) == run(model, tok, ids(tok))


class BanToken:
    """A logits processor that forbids one token."""

    def __init__(self, token: int):
        self.token = token

    def __call__(self, input_ids, scores):
        return scores.index_fill(-1, torch.tensor([self.token]), -float("inf"))


def test_extra_processors_run_in_greedy_and_before_decode_sampling(mt):
    model, tok = mt
    rows = ids(tok)
    greedy = run(model, tok, rows)
    banned = max(set(t for r in greedy for t in r), key=lambda t: sum(r.count(t) for r in greedy))
    with_ban = run(model, tok, rows, DiscreteStrategy(processors=[BanToken(banned)]))
    assert all(banned not in r for r in with_ban)  # greedy is the argmax of the processed logits
    assert run(model, tok, rows, DiscreteStrategy(processors=[BanToken(banned)]), do_sample=True, top_k=1) == with_ban


# --- soft thinking: the answer phase is decode.*'s -------------------------------------------


@pytest.mark.parametrize("mode", ["vanilla", "dirichlet", "gumbel"])
def test_soft_thinking_answer_phase_after_cold_stop_is_plain_decoding(mt, mode):
    """Cold Stop at the first step (patience 1, any entropy): the row records </think>, then answers with
    decode.*'s sampling, i.e. like plain decoding of the prompt followed by </think>."""
    model, tok = mt
    close = tok.convert_tokens_to_ids("</think>")
    rows = ids(tok)
    after_close = [r + [close] for r in rows]

    def soft_answers(seed=0, **kw):
        strategy = SoftThinkingStrategy(SoftThinkingConfig(mode=mode, cold_stop=True, cold_stop_patience=1,
                                                           cold_stop_threshold=1e9), tok)
        out = run(model, tok, rows, strategy, max_new_tokens=N_NEW + 1, seed=seed, **kw)
        assert all(r[0] == close for r in out)
        return [r[1:] for r in out]

    greedy = run(model, tok, after_close)
    for kw in DETERMINISTIC:
        assert soft_answers(**kw) == greedy, kw
    for kw in STOCHASTIC:
        plain = run(model, tok, after_close, seed=2, **kw)
        assert plain != greedy, kw
        if mode == "vanilla":  # no thinking noise: the same random stream as plain decoding
            assert soft_answers(seed=2, **kw) == plain, kw
    assert any(soft_answers(seed=s, do_sample=True, temperature=1.5) != greedy for s in (2, 3))


def test_soft_thinking_before_phase_is_decode_sampling(mt):
    """Rows outside <think> decode discretely with decode.*; the model is kept from opening <think>."""
    model, tok = mt
    open_id = tok.convert_tokens_to_ids("<think>")
    rows = ids(tok, [p.replace("<think>", "") for p in PROMPTS])
    handle = model.get_output_embeddings().register_forward_hook(
        lambda module, args, out: out.index_fill(-1, torch.tensor([open_id]), -1e4))
    try:
        for kw in DETERMINISTIC + STOCHASTIC:
            soft = run(model, tok, rows, SoftThinkingStrategy(SoftThinkingConfig(cold_stop=False), tok), seed=4, **kw)
            assert soft == run(model, tok, rows, seed=4, **kw), kw
    finally:
        handle.remove()


def test_answer_phase_soft_refuses_decode_sampling(mt):
    model, tok = mt
    strategy = SoftThinkingStrategy(SoftThinkingConfig(answer_phase_soft=True), tok)
    with pytest.raises(MentaleseError, match="answer_phase_soft"):
        run(model, tok, ids(tok), strategy, do_sample=True, temperature=0.6)
    run(model, tok, ids(tok), strategy)  # greedy settings are what it does


def test_soft_thinking_config_has_no_second_answer_owner():
    with pytest.raises(TypeError):
        SoftThinkingConfig(answer={"do_sample": False})


def test_eval_refuses_answer_phase_soft_with_sampling_before_loading(capsys):
    assert main(["eval", "model=/nonexistent/model", "soft_thinking.answer_phase_soft=true",
                 "decode.do_sample=true", "decode.temperature=0.6"]) == 2
    assert "answer_phase_soft" in capsys.readouterr().err


def test_soft_recipes_carry_the_papers_answer_sampling_as_decode_settings():
    greedy_toys = {"soft_thinking/code_toy"}  # a CPU toy decoded greedily (docs/code_benchmarks.md), no paper setting
    for name in (n for n in list_recipes() if n.startswith("soft_thinking/") and n not in greedy_toys):
        raw = read_yaml(resolve_recipe(name))
        assert "answer" not in (raw.get("soft_thinking") or {}), name
        d = load_config(EvalConfig, resolve_recipe(name)).decode
        qwen3 = name.startswith("soft_thinking/qwen3")
        assert (d.do_sample, d.temperature, d.top_k, d.top_p) == (True, 0.6, 20 if qwen3 else 30, 0.95), name


def test_soft_analysis_routes_its_sampling_through_decode_config():
    from mentalese.analysis.soft_commands import SoftAnalysisConfig, decoding_for

    tok = char_tokenizer(extra_tokens=["<think>", "</think>"])
    cfg = SoftAnalysisConfig(max_new_tokens=7, seed=3)
    dc, strategy = decoding_for("greedy", cfg, tok)
    assert dc.greedy and dc.max_new_tokens == 7 and dc.seed == 3
    for name in ("sampling", "soft", "gumbel"):
        dc, strategy = decoding_for(name, cfg, tok)
        assert dc.sampling() == cfg.sampling, name
        strategy.bind_sampling(dc.sampling())


# --- CODI: latent steps sample nothing, the answer is decode.*'s ---------------------------------


def test_codi_answer_phase_takes_decode_sampling(tmp_path):
    from mentalese.methods.codi.config import CODIConfig
    from mentalese.methods.codi.model import build_codi_model

    cfg = load_config(CODIConfig, None, [f"output_dir={tmp_path}", "report_to=none", "use_cpu=true", "num_latent=2",
                                         "model_name_or_path=tiny-gpt2"])
    model, tok = build_codi_model(cfg)
    model.eval()
    prompts = ["7+5*3\n", "1-4*2*9-3\n", "3*3\n"]

    def answers(seed=0, **kw):
        dc = DecodeConfig(max_new_tokens=10, seed=seed, **kw)
        return [r.token_ids for r in decode(model.lm, tok, prompts, dc, strategy=model.strategy())]

    greedy = answers()
    for kw in DETERMINISTIC:
        assert answers(**kw) == greedy, kw
    assert any(answers(seed=s, do_sample=True, temperature=1.5) != greedy for s in (0, 1))
    with pytest.raises(MentaleseError, match="decode"):
        decode(model.lm, tok, prompts, DecodeConfig(max_new_tokens=10),
               strategy=model.strategy(SamplingConfig(do_sample=True)))


# --- strategies that cannot honour them refuse -------------------------------------------------


@pytest.mark.parametrize("kw, named", [({}, "do_sample"), ({"do_sample": True, "temperature": 0.7}, "temperature"),
                                       ({"do_sample": True, "top_k": 5}, "top_k"),
                                       ({"do_sample": True, "top_p": 0.9}, "top_p"),
                                       ({"do_sample": True, "min_p": 0.1}, "min_p")])
def test_bolt_sampler_refuses_what_it_does_not_do(mt, kw, named):
    from mentalese.methods.bolt.estep import LogProbSampler

    model, tok = mt
    with pytest.raises(MentaleseError, match=f"decode.{named}"):
        run(model, tok, ids(tok), LogProbSampler(), **kw)
    out = decode(model, tok, ids(tok), DecodeConfig(max_new_tokens=4, do_sample=True), LogProbSampler())
    assert all("logq" in r.info for r in out)


class ArgmaxOnly(InputStrategy):
    def step(self, ctx):
        return StepDecision(tokens=ctx.logits.argmax(-1))


def test_a_strategy_without_sampling_refuses_decode_sampling(mt):
    model, tok = mt
    with pytest.raises(MentaleseError, match="ArgmaxOnly.*decode.do_sample"):
        run(model, tok, ids(tok), ArgmaxOnly(), do_sample=True)
    assert run(model, tok, ids(tok), ArgmaxOnly()) == run(model, tok, ids(tok))
