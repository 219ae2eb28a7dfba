"""`mentalese analyze thoughts` (analysis/thought_interventions.py, thought_traces.py): traces recorded from the
decode loop, replayed exactly, changed by hand-checked interventions, scored by a teacher-forced pass that
matches a manual computation, and the tool end to end on tiny CODI, BoLT, soft-thinking and Coconut models."""

import json
import math

import pytest
import torch

from mentalese.analysis.thought_interventions import (
    ThoughtsConfig, _latent_method, gold_ids, record_traces, run_thoughts,
)
from mentalese.analysis.thought_traces import (
    RecordedRow, ThoughtTrace, attention_mass, derangement, noised, replay, score_traces, swapped,
    trace_from_record, truncated, zeroed,
)
from mentalese.commands.cli import main
from mentalese.config import load_config
from mentalese.decoding.loop import DecodeConfig, decode, tokenize_prompts
from mentalese.decoding.strategies import DiscreteStrategy
from mentalese.errors import MentaleseError
from mentalese.methods.codi.config import CODIConfig
from mentalese.methods.codi.model import build_codi_model, save_codi
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.models.tiny import build_tiny_model, char_tokenizer

PROMPTS = ["7+5*3\n", "1-4*2*9-3\n", "3*3\n", "7+5*3\n", "2-8+1*4\n"]  # a repeated prompt on purpose
TINY = {"n_layer": 2, "n_embd": 32, "n_head": 2, "initializer_range": 0.2}  # wide init: outputs follow inputs
CHAIN = {"num_steps": 1, "num_examples": 6}


@pytest.fixture(scope="module")
def codi(tmp_path_factory, one_thread):
    """A random tiny CODI model (3 thoughts), saved."""
    root = tmp_path_factory.mktemp("codi")
    cfg = load_config(CODIConfig, None, [f"output_dir={root}", "report_to=none", "use_cpu=true", "num_latent=3",
                                         f"tiny_model_options={json.dumps(TINY)}"])
    model, tok = build_codi_model(cfg)
    model.eval()
    save_codi(model, tok, root / "model")
    return model, tok, root / "model"


@pytest.fixture(scope="module")
def plain(tmp_path_factory, one_thread):
    path = build_tiny_model("gpt2", char_tokenizer(), tmp_path_factory.mktemp("plain"), **TINY)
    model, tok = load_model_and_tokenizer(path, dtype="float32", device="cpu")
    return model, tok, path


@pytest.fixture(scope="module")
def bolt(tmp_path_factory, one_thread):
    """A tiny Llama with the BoLT tokens, overfit (100 Adam steps) on six 1-step chain problems in the latent
    layout, so that it writes a thought, closes it with <|end_of_latent|> and answers."""
    from mentalese.methods.bolt.data_format import EOL, PRIOR, SOL, add_bolt_tokens
    from mentalese.tasks.registry import load_benchmark

    root = tmp_path_factory.mktemp("bolt")
    path = build_tiny_model("llama", char_tokenizer(), root / "init", hidden_size=32, intermediate_size=64,
                            num_attention_heads=2, num_key_value_heads=2)
    model, tok = load_model_and_tokenizer(path, dtype="float32", device="cpu")
    torch.manual_seed(0)
    add_bolt_tokens(model, tok)
    texts = [f"<s>Q: {ex.question}. {SOL}{PRIOR}{' '.join(ex.cot_steps)}{EOL}The answer is: {ex.answer}.\n{SOL}"
             for ex in load_benchmark("chain", "test", **CHAIN)]
    enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(100):
        loss = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3
    model.eval()
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    return root / "model"


def soft_settings():
    """Char tokenizer: no <think> tags, so rows think right after the prompt and "=" closes; Cold Stop with an
    entropy threshold no distribution is above ends thinking after 3 steps at the latest."""
    return {"think_open": "", "think_close": "=", "cold_stop_threshold": 100.0, "cold_stop_patience": 3}


# --- traces: recording and exact replay -------------------------------------------------------------------

def test_recorded_codi_traces_replay_to_the_original_decode(codi):
    model, tok, _ = codi
    method = _latent_method("codi", model, tok, "{question}")
    config = DecodeConfig(max_new_tokens=12, batch_size=2)
    original, traces = record_traces(method, PROMPTS, config)
    plain = decode(model.lm, tok, PROMPTS, config, model.strategy())  # recording changes nothing
    assert [r.token_ids for r in original] == [r.token_ids for r in plain]
    assert all(tr.open_ids == [model.bot_id] and tr.close_ids == [model.eot_id] and tr.num_thoughts == 3
               for tr in traces)
    # the recorded inputs are the projected hidden states that record_thoughts keeps (in decode's order:
    # longest prompts first)
    probe = model.strategy(record_thoughts=True)
    decode(model.lm, tok, PROMPTS, DecodeConfig(max_new_tokens=12, batch_size=1), probe)
    order = sorted(range(len(PROMPTS)), key=lambda i: -len(tr_ids(tok, PROMPTS[i])))
    for i, hidden in zip(order, probe.thoughts):
        tr = traces[i]
        torch.testing.assert_close(tr.thoughts, model.project(hidden[0]).detach(), rtol=1e-5, atol=1e-6)
    again = replay(model.lm, tok, traces, config)
    assert [r.token_ids for r in again] == [r.token_ids for r in original] == [tr.answer_ids for tr in traces]
    # not vacuous: this model's answers do follow its thoughts
    for changed in (zeroed(traces), noised(traces, 0)):
        assert [r.token_ids for r in replay(model.lm, tok, changed, config)] != [r.token_ids for r in again]


def tr_ids(tok, prompt):
    return tokenize_prompts(tok, [prompt], True)[0]


def test_soft_thinking_traces_replay_to_the_original_answers(plain):
    from mentalese.decoding.soft_thinking import SoftThinkingConfig, SoftThinkingStrategy
    from mentalese.analysis.thought_interventions import ThoughtMethod

    model, tok, _ = plain
    strategy = SoftThinkingStrategy(SoftThinkingConfig(**soft_settings()), tok)
    method = ThoughtMethod("soft_thinking", model, tok, strategy, "embeds", [strategy.close_id], "{question}")
    config = DecodeConfig(max_new_tokens=10, batch_size=2)
    original, traces = record_traces(method, PROMPTS, config)
    assert all(tr.num_thoughts <= 2 and tr.close_ids == [strategy.close_id] for tr in traces)
    assert sum(tr.num_thoughts for tr in traces) >= 4
    for res, tr in zip(original, traces):  # the visible trace = argmax tokens, closing tag, answer
        assert res.token_ids == tr.open_ids + tr.thought_token_ids + tr.close_ids + tr.answer_ids
    assert [r.token_ids for r in replay(model, tok, traces, config)] == [tr.answer_ids for tr in traces]
    assert [r.token_ids for r in replay(model, tok, zeroed(traces), config)] != [tr.answer_ids for tr in traces]


def test_span_rules_cut_recorded_rows_by_hand():
    e = [torch.full((2,), float(i)) for i in range(3)]
    # continuous thoughts: <bot>=1, 2 fed embeddings, <eot>=2, answer 5 6, eos=9
    row = RecordedRow([1, 1, 1, 2, 5, 6, 9], [False, True, True, False, False, False, False],
                      [False] * 4 + [True] * 3, e[:2])
    embed = lambda ids: torch.tensor(ids, dtype=torch.float)[:, None].repeat(1, 2)  # noqa: E731
    for rule in ("embeds", "marked"):
        tr = trace_from_record(row, [7, 8], rule, [2], [9], embed, open_id=1)
        assert (tr.open_ids, tr.close_ids, tr.answer_ids, tr.num_thoughts) == ([1], [2], [5, 6, 9], 2)
        assert torch.equal(tr.thoughts, torch.stack(e[:2]))
    never_closed = RecordedRow([4, 4, 4], [True] * 3, [True] * 3, e)
    tr = trace_from_record(never_closed, [7], "embeds", [2], [9], embed)
    assert (tr.open_ids, tr.close_ids, tr.answer_ids, tr.num_thoughts) == ([], [2], [], 3)
    closed_at_once = RecordedRow([2, 5, 9], [False] * 3, [True] * 3, [])  # soft thinking wrote </think> first
    tr = trace_from_record(closed_at_once, [7], "embeds", [2], [9], embed)
    assert (tr.open_ids, tr.close_ids, tr.answer_ids, tr.num_thoughts) == ([], [2], [5, 9], 0)
    # pause tokens (Coconut pause_as_thought): the latent token 3 is fed as itself
    row = RecordedRow([1, 3, 3, 2, 5], [False] * 5, [False] * 4 + [True], [])
    tr = trace_from_record(row, [7], "marked", [2], [9], embed, open_id=1)
    assert (tr.open_ids, tr.thought_token_ids, tr.thoughts[:, 0].tolist()) == ([1], [3, 3], [3.0, 3.0])
    # BoLT: thought tokens 3 4, <|end_of_latent|>=2, answer 5, stop (SOL)=8
    row = RecordedRow([3, 4, 2, 5, 8], [False] * 5, [True] * 5, [])
    tr = trace_from_record(row, [7], "marked", [2], [8], embed, prompt_markers=2)
    assert (tr.thought_token_ids, tr.close_ids, tr.answer_ids, tr.prompt_markers) == ([3, 4], [2], [5, 8], 2)
    assert tr.thoughts[:, 0].tolist() == [3.0, 4.0]
    stopped = RecordedRow([3, 8], [False] * 2, [True] * 2, [])
    tr = trace_from_record(stopped, [7], "marked", [2], [8], embed)
    assert (tr.thought_token_ids, tr.close_ids, tr.answer_ids) == ([3], [2], [])


# --- interventions ---------------------------------------------------------------------------------------

def trace(thoughts, prompt=(1, 2)):
    t = torch.tensor(thoughts, dtype=torch.float)
    return ThoughtTrace(list(prompt), [3], t, [4], [3] * t.shape[0], [5])


def test_zero_and_noise_keep_shapes_and_the_noise_keeps_each_norm():
    traces = [trace([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]]), trace([[0.0, 2.0]])]
    for z, tr in zip(zeroed(traces), traces):
        assert z.thoughts.shape == tr.thoughts.shape and not z.thoughts.any() and z.answer_ids == []
    noisy = noised(traces, seed=0)
    assert [n.thoughts.shape for n in noisy] == [(3, 2), (1, 2)]
    assert noisy[0].thoughts.norm(dim=-1).tolist() == pytest.approx([5.0, 0.0, 1.0], abs=1e-6)
    assert noisy[1].thoughts.norm(dim=-1).tolist() == pytest.approx([2.0], abs=1e-6)
    assert not torch.allclose(noisy[0].thoughts[0], traces[0].thoughts[0])
    assert torch.equal(noised(traces, seed=0)[0].thoughts, noisy[0].thoughts)
    assert not torch.equal(noised(traces, seed=1)[0].thoughts, noisy[0].thoughts)
    assert truncated(traces, 1)[0].thoughts.tolist() == [[3.0, 4.0]] and truncated(traces, 0)[1].num_thoughts == 0


def test_derangement_never_maps_an_example_to_itself():
    for n in range(2, 40):
        for seed in range(4):
            perm = derangement(n, seed)
            assert sorted(perm) == list(range(n)) and all(p != i for i, p in enumerate(perm))
    assert derangement(10, 3) == derangement(10, 3) != derangement(10, 4)
    with pytest.raises(MentaleseError, match="at least 2 examples"):
        derangement(1, 0)
    traces = [trace([[float(i), 0.0]], prompt=(i,)) for i in range(5)]
    perm = derangement(5, 0)
    out = swapped(traces, perm)
    assert [t.thoughts[0, 0].item() for t in out] == [float(p) for p in perm]
    assert [t.prompt_ids for t in out] == [t.prompt_ids for t in traces]


def test_truncation_to_zero_equals_a_prompt_with_just_the_markers(codi):
    model, tok, _ = codi
    method = _latent_method("codi", model, tok, "{question}")
    _, traces = record_traces(method, PROMPTS, DecodeConfig(max_new_tokens=12, batch_size=2))
    empty = replay(model.lm, tok, truncated(traces, 0), DecodeConfig(max_new_tokens=12, batch_size=2))
    ids = tokenize_prompts(tok, PROMPTS, True)
    direct = decode(model.lm, tok, [p + [model.bot_id, model.eot_id] for p in ids],
                    DecodeConfig(max_new_tokens=10, batch_size=2), DiscreteStrategy())
    assert [r.token_ids for r in empty] == [r.token_ids for r in direct]
    assert all(r.num_steps == d.num_steps + 2 for r, d in zip(empty, direct))


# --- teacher-forced scoring ------------------------------------------------------------------------------

def test_attention_mass_by_hand():
    layer0 = torch.tensor([[[[1, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]],
                            [[1, 0, 0], [0.9, 0.1, 0], [0.6, 0.2, 0.2]]]])
    layer1 = torch.tensor([[[[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]]] * 2])
    queries, keys = torch.tensor([[False, True, True]]), torch.tensor([[True, False, False]])
    mass = attention_mass([layer0, layer1], queries, keys)
    # layer 0: heads (0.5, 0.9) and (0.2, 0.6) -> queries 0.7 and 0.4 -> 0.55; layer 1: (0.5 + 1/3) / 2
    assert mass.tolist() == [pytest.approx([0.55, 5 / 12])]
    assert torch.isnan(attention_mass([layer0], queries, torch.zeros_like(keys))).all()


def manual_inputs(model, tr, gold):
    embed = model.get_input_embeddings()
    pieces = [embed(torch.tensor(tr.prompt_ids + tr.open_ids)), tr.thoughts, embed(torch.tensor(tr.close_ids + gold))]
    return torch.cat(pieces)[None]


def test_log_likelihood_pass_equals_a_manual_teacher_forced_computation(plain):
    model, tok, _ = plain
    torch.manual_seed(0)
    d = model.config.n_embd
    traces = [ThoughtTrace([5, 6, 7, 8, 9], [10], torch.randn(3, d), [11], [10] * 3),
              ThoughtTrace([5, 6], [10], torch.randn(1, d), [11], [10]),
              ThoughtTrace([12, 13, 14], [10], torch.randn(0, d), [11], [])]
    golds = [[20, 21, 22], [23], [24, 25]]
    scores = score_traces(model, traces, golds, batch_size=3)
    for tr, gold, sc in zip(traces, golds, scores):
        with torch.no_grad():
            logprobs = model(inputs_embeds=manual_inputs(model, tr, gold)).logits[0].log_softmax(-1)
        start = len(tr.prompt_ids) + len(tr.open_ids) + tr.num_thoughts + len(tr.close_ids)
        expected = sum(logprobs[start + i - 1, g].item() for i, g in enumerate(gold))
        assert sc.answer_logprob == pytest.approx(expected, abs=1e-4) and sc.answer_tokens == len(gold)
    assert scores[2].thought_attention is None and scores[1].reference_positions == 1
    alone = score_traces(model, traces[:1], golds[:1])[0]  # padding in a batch changes nothing
    assert alone.thought_attention == pytest.approx(scores[0].thought_attention, abs=1e-5)
    assert model.config._attn_implementation == "sdpa"  # restored after the eager pass
    quick = score_traces(model, traces, golds, attention=False)  # sdpa, no attentions: the same likelihoods
    assert [q.answer_logprob for q in quick] == pytest.approx([sc.answer_logprob for sc in scores], abs=1e-4)
    assert all(q.thought_attention is None for q in quick)


def test_attention_mass_equals_a_manual_softmax_of_q_k(tmp_path, one_thread):
    path = build_tiny_model("gpt2", char_tokenizer(), tmp_path, n_layer=1, n_head=1, n_embd=16)
    model, _ = load_model_and_tokenizer(path, dtype="float32", device="cpu")
    torch.manual_seed(1)
    tr = ThoughtTrace([5, 6, 7, 8], [10], torch.randn(2, 16), [11], [10, 10])
    gold = [20, 21]
    score = score_traces(model, [tr], [gold])[0]
    with torch.no_grad():
        x = manual_inputs(model, tr, gold)[0]
        T = x.shape[0]
        block = model.transformer.h[0]
        hidden = x + model.transformer.wpe(torch.arange(T))
        q, k, _ = block.attn.c_attn(block.ln_1(hidden)).split(16, dim=-1)
        logits = q @ k.T / math.sqrt(16)
        probs = logits.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf")).softmax(-1)
    thought_pos, prompt_pos = [5, 6], [2, 3]  # prompt 0-3, <bot> 4, thoughts 5-6, <eot> 7, gold 8-9
    predicting = [7, 8]
    expected = sum(probs[q_, thought_pos].sum().item() for q_ in predicting) / 2
    reference = sum(probs[q_, prompt_pos].sum().item() for q_ in predicting) / 2
    assert score.thought_attention == pytest.approx([expected], abs=1e-5)
    assert score.reference_attention == pytest.approx([reference], abs=1e-5) and score.reference_positions == 2


def test_gold_ids_tokenise_the_answer_prompt_and_the_value_apart(plain):
    _, tok, _ = plain
    ids = gold_ids(tok, "The answer is: {answer}.", "42", eos=True)
    assert ids == tok("The answer is:", add_special_tokens=False)["input_ids"] + \
        tok(" 42.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


# --- the tool end to end -----------------------------------------------------------------------------------

def check_report(report: dict, kind: str, n: int) -> None:
    assert report["kind"] == kind and report["kept_replay_equals_original"] == 1.0
    names = list(report["interventions"])
    assert names[:4] == ["kept", "swap", "zero", "noise"] and names[4:] == [f"truncate_{j}" for j in range(n + 1)]
    kept = report["interventions"]["kept"]
    assert kept["accuracy_drop"] == 0 and kept["answer_logprob_drop"] == 0
    assert kept["accuracy"] == report["original_accuracy"] or kind != "codi"
    full = report["interventions"][f"truncate_{n}"]  # all thoughts kept: the same numbers
    assert full["accuracy"] == kept["accuracy"] and full["answer_logprob"] == pytest.approx(kept["answer_logprob"])
    assert report["interventions"]["truncate_0"]["attention_on_thoughts"] is None
    assert 0 < kept["attention_on_thoughts"] < 1 and len(kept["attention_on_thoughts_per_layer"]) == 2


def test_codi_end_to_end_through_the_cli(codi, tmp_path, capsys):
    _, _, path = codi
    code = main(["analyze", "thoughts", f"model={path}", "limit=4", "task_options={num_steps: 2}", "device=cpu",
                 "decode.max_new_tokens=12", "decode.batch_size=3", "answer_min_tokens=4", f"output_dir={tmp_path}"])
    assert code == 0
    report = json.loads((tmp_path / "thoughts.json").read_text())
    check_report(report, "codi", 3)
    assert report["num_thoughts"] == {"mean": 3, "min": 3, "max": 3}
    assert all(p != i for i, p in enumerate(report["swap_permutation"]))
    rows = [json.loads(line) for line in (tmp_path / "thoughts_examples.jsonl").open()]
    assert len(rows) == 4 and all(r["interventions"]["kept"]["text"] == r["original_text"] for r in rows)
    assert (tmp_path / "thoughts.png").stat().st_size > 10_000 and (tmp_path / "config.yaml").is_file()
    assert '"kind": "codi"' in capsys.readouterr().out


def test_bolt_latent_model_end_to_end(bolt, tmp_path):
    report = run_thoughts(ThoughtsConfig(model=str(bolt), task_options=CHAIN, prompt="Q: {question}. ", device="cpu",
                                         decode=DecodeConfig(max_new_tokens=40), answer_min_tokens=24,
                                         output_dir=str(tmp_path)))
    n = report["num_thoughts"]["max"]
    check_report(report, "bolt", n)
    assert report["answer_template"] == "The answer is: {answer}." and report["answer_eos"] is False
    rows = [json.loads(line) for line in (tmp_path / "thoughts_examples.jsonl").open()]
    # the overfit model writes the derivation as its thought, e.g. "1+2=3"
    assert sum("=" in r["thought_text"] for r in rows) >= 4
    runs = report["interventions"]
    assert runs["kept"]["answer_logprob"] > runs["truncate_0"]["answer_logprob"] + 2


def test_soft_thinking_end_to_end(plain, tmp_path):
    _, _, path = plain
    report = run_thoughts(ThoughtsConfig(model=str(path), strategy="soft_thinking", soft_thinking=soft_settings(),
                                         limit=4, task_options={"num_steps": 2}, device="cpu",
                                         decode=DecodeConfig(max_new_tokens=10), answer_min_tokens=4,
                                         output_dir=str(tmp_path)))
    check_report(report, "soft_thinking", report["num_thoughts"]["max"])
    assert report["answer_template"] == "\nThe answer is: {answer}"


def test_plain_model_without_soft_thinking_is_refused(plain, codi, tmp_path):
    with pytest.raises(MentaleseError, match="plain model: it has no latent thoughts; use strategy=soft_thinking"):
        run_thoughts(ThoughtsConfig(model=str(plain[2]), device="cpu", output_dir=str(tmp_path)))
    with pytest.raises(MentaleseError, match="saved codi model"):
        run_thoughts(ThoughtsConfig(model=str(codi[2]), strategy="soft_thinking", output_dir=str(tmp_path)))
    with pytest.raises(MentaleseError, match="unknown intervention 'shuffle'"):
        ThoughtsConfig(interventions=["shuffle"])


@pytest.mark.parametrize("mode", ["coconut", "pause_as_thought"])
def test_coconut_end_to_end(mode, plain, tmp_path, one_thread):
    coconut = pytest.importorskip("mentalese.methods.coconut.model",
                                  reason="mentalese.methods.coconut is not in this tree yet")
    from mentalese.methods.coconut.config import CoconutConfig

    cfg = load_config(CoconutConfig, None, [f"output_dir={tmp_path}", "report_to=none", "use_cpu=true",
                                            f"mode={mode}", "new_token_init=mean"])
    model, tok = coconut.build_coconut_model(cfg, str(plain[2]), stage=2)  # random: 2 x 2 = 4 thoughts
    coconut.save_coconut(model, tok, tmp_path / "model")
    report = run_thoughts(ThoughtsConfig(model=str(tmp_path / "model"), limit=4, task_options={"num_steps": 2},
                                         device="cpu", decode=DecodeConfig(max_new_tokens=12), answer_min_tokens=4,
                                         output_dir=str(tmp_path / "out")))
    check_report(report, "coconut", model.num_latent)
    assert report["num_thoughts"]["min"] == model.num_latent == 4
