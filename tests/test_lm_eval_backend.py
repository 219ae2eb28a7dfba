"""The lm-eval backend (mentalese/lm_eval_backend.py): lm-eval's tasks through our decode loop.

Equivalences, on the toy tasks of tests/data/lm_eval_task and the tiny chain model of conftest:
- generate_until through lm-eval == our own harness on the same examples: per-example texts, correctness and
  accuracy, for greedy, gumbel soft thinking, `repeats: 4` sampling (== num_samples=4) and a saved CODI model;
- loglikelihood (a multiple_choice task), empty contexts and rolling windows == HFLM's on the same model;
- chat-templated prompts and stop strings (cut, and rows stopped early) == HFLM's generations.
"""

import functools
import json
import os
import sys
from pathlib import Path

import lm_eval
import pytest
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

import mentalese
from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.decoding.stop_strings import StopAtStrings
from mentalese.decoding.strategies import DiscreteStrategy
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import evaluate as harness_evaluate
from mentalese.lm_eval_backend import MentaleseLM, main
from mentalese.methods.codi.model import load_codi
from mentalese.tasks.example import Example
from mentalese.tasks.registry import get_benchmark

REPO = Path(__file__).resolve().parents[1]
TASK_DIR = REPO / "tests" / "data" / "lm_eval_task"
SOFT = {"mode": "gumbel", "think_open": "", "think_close": "\n"}  # thinks through the CoT line (char tokens)


@pytest.fixture(scope="module")
def tasks():
    before = os.getcwd()
    os.chdir(REPO)  # the tasks' data_files are relative to the repository root
    yield TaskManager(include_path=str(TASK_DIR), include_defaults=False)
    os.chdir(before)


@pytest.fixture(scope="module")
def model_dir(tiny_chain_run, one_thread):
    return tiny_chain_run / "model"


@pytest.fixture(scope="module")
def greedy_lm(model_dir):
    return MentaleseLM(pretrained=str(model_dir), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def examples():
    rows = [json.loads(line) for line in (TASK_DIR / "chain.jsonl").open()]
    return [Example(question=r["question"], answer=r["answer"], id=r["id"]) for r in rows]


def run_lm_eval(lm, task, tasks, **kwargs):
    out = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=tasks, log_samples=True, **kwargs)
    return out["results"][task], sorted(out["samples"][task], key=lambda s: s["doc_id"])


def run_harness(model, tokenizer, examples, out_dir, strategy=None, num_samples=1, **decode_fields):
    config = DecodeConfig(max_new_tokens=48, batch_size=8, **decode_fields)
    metrics = harness_evaluate(model, tokenizer, examples, get_benchmark("chain"), config, strategy,
                               num_samples=num_samples, output_dir=out_dir, progress=False)
    return metrics, [json.loads(line) for line in (out_dir / "predictions.jsonl").open()]


@pytest.mark.parametrize("strategy", ["greedy", "gumbel"])
def test_generate_until_matches_our_harness(strategy, greedy_lm, model_dir, examples, tasks, tmp_path):
    if strategy == "greedy":
        lm, harness_strategy = greedy_lm, None
    else:
        lm = MentaleseLM(pretrained=str(model_dir), device="cpu", batch_size=8, strategy="gumbel",
                         **{f"soft_thinking.{k}": v for k, v in SOFT.items() if k != "mode"})
        harness_strategy = mentalese.load(model_dir, device="cpu").strategy("soft_thinking", soft_thinking=SOFT)
    results, samples = run_lm_eval(lm, "mentalese_chain", tasks)
    metrics, records = run_harness(lm.model, lm.tokenizer, examples, tmp_path, harness_strategy)
    texts = [s["resps"][0][0] for s in samples]
    assert texts == [r["samples"][0]["text"] for r in records]
    assert [bool(s["exact_match"]) for s in samples] == [r["samples"][0]["correct_strict"] for r in records]
    assert results["exact_match,strict"] == metrics["accuracy"]
    assert 0 < metrics["accuracy"] < 1  # some right, some wrong: the comparison says something
    if strategy == "gumbel":
        assert type(lm.strategy).__name__ == "SoftThinkingStrategy"
        greedy = [r["samples"][0]["text"] for r in run_harness(lm.model, lm.tokenizer, examples, tmp_path / "g")[1]]
        assert texts != greedy  # the concept tokens changed some answers
        with pytest.raises(MentaleseError, match="no meaning under soft thinking"):
            lm.loglikelihood([Instance("loglikelihood", {}, ("1+2\n", "1"), 0)])


def test_repeats_are_independent_draws_equal_to_num_samples(greedy_lm, examples, tasks, tmp_path):
    _, samples = run_lm_eval(greedy_lm, "mentalese_chain_sampled", tasks, limit=6)
    _, records = run_harness(greedy_lm.model, greedy_lm.tokenizer, examples[:6], tmp_path, num_samples=4,
                             do_sample=True)
    drawn = [s["resps"][0] for s in samples]  # one request, its 4 responses
    assert all(len(d) == 4 for d in drawn) and any(len(set(d)) > 1 for d in drawn)
    assert drawn == [[x["text"] for x in r["samples"]] for r in records]


def test_loglikelihood_matches_hflm(greedy_lm, model_dir, tasks):
    hf = HFLM(pretrained=str(model_dir), device="cpu", batch_size=8, dtype="float32")
    ours, our_samples = run_lm_eval(greedy_lm, "mentalese_chain_mc", tasks)
    theirs, hf_samples = run_lm_eval(hf, "mentalese_chain_mc", tasks)
    assert ours["acc,none"] == theirs["acc,none"]
    for a, b in zip(our_samples, hf_samples, strict=True):
        assert [greedy for ((_, greedy),) in a["resps"]] == [greedy for ((_, greedy),) in b["resps"]]
        assert [lp for ((lp, _),) in a["resps"]] == pytest.approx([lp for ((lp, _),) in b["resps"]], abs=1e-5)
    assert any(greedy for s in our_samples for ((_, greedy),) in s["resps"])
    # empty contexts (the prefix token) and rolling windows longer than the context (max_length=16)
    short_hf = HFLM(pretrained=str(model_dir), device="cpu", batch_size=4, dtype="float32", max_length=16)
    short = MentaleseLM(pretrained=str(model_dir), device="cpu", batch_size=4, max_length=16)
    pairs = [Instance("loglikelihood", {}, args, i)
             for i, args in enumerate([("", "4*3=2 2+1=3"), ("4*3+1\n", "4*3=2")])]
    texts = [Instance("loglikelihood_rolling", {}, (t,), i)
             for i, t in enumerate(["6*1*1\n6*1=6 6*1=6\nThe answer is: 6", "1+2"])]
    ours_pairs, hf_pairs = short.loglikelihood(pairs), short_hf.loglikelihood(pairs)
    assert [g for _, g in ours_pairs] == [g for _, g in hf_pairs]
    assert [lp for lp, _ in ours_pairs] == pytest.approx([lp for lp, _ in hf_pairs], abs=1e-5)
    assert short.loglikelihood_rolling(texts) == pytest.approx(short_hf.loglikelihood_rolling(texts), abs=1e-5)


def test_chat_template_and_stop_strings_match_hflm(model_dir, tasks, tmp_path):
    chat_dir = tmp_path / "chat"
    chat_dir.mkdir()
    for f in model_dir.iterdir():
        if f.is_file():
            (chat_dir / f.name).write_bytes(f.read_bytes())
    config = json.loads((chat_dir / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    (chat_dir / "tokenizer_config.json").write_text(json.dumps(config))
    settings = dict(limit=6, apply_chat_template=True, gen_kwargs={"until": ["=", "\n\n"], "max_gen_toks": 24})
    ours = MentaleseLM(pretrained=str(chat_dir), device="cpu", batch_size=4)
    _, our_samples = run_lm_eval(ours, "mentalese_chain", tasks, **settings)
    hf = HFLM(pretrained=str(chat_dir), device="cpu", batch_size=4, dtype="float32")
    _, hf_samples = run_lm_eval(hf, "mentalese_chain", tasks, **settings)
    assert [s["arguments"] for s in our_samples] == [s["arguments"] for s in hf_samples]
    assert our_samples[0]["arguments"][0][0].startswith("user: 6*1*1\n")
    assert [s["resps"] for s in our_samples] == [s["resps"] for s in hf_samples]


def test_stop_strings_end_rows_one_step_after_the_string(greedy_lm, examples):
    model, tok = greedy_lm.model, greedy_lm.tokenizer
    prompts = [ex.question + "\n" for ex in examples[:6]]
    full = decode(model, tok, prompts, DecodeConfig(max_new_tokens=48, batch_size=4))
    stopped = decode(model, tok, prompts, DecodeConfig(max_new_tokens=48, batch_size=4),
                     StopAtStrings(DiscreteStrategy(), tok, ["="], end_id=tok.eos_token_id))
    for f, s in zip(full, stopped):
        cut = f.text.index("=") + 1  # one character per token: the row emits "=" then eos
        assert s.text == f.text[:cut] and s.token_ids[-1] == tok.eos_token_id and s.num_tokens == cut + 1


def test_codi_model_decodes_its_thoughts_and_refuses_likelihoods(model_dir, examples, tasks, tmp_path):
    codi_dir = mentalese.train("codi/chain", [f"output_dir={tmp_path / 'codi'}", f"model_name_or_path={model_dir}",
                                              "max_steps=1", "num_latent=2", "use_cpu=true", "disable_tqdm=true",
                                              "task_options={num_steps: 2, num_examples: 64}", "save_steps=100",
                                              "per_device_train_batch_size=8"])
    lm = MentaleseLM(pretrained=str(codi_dir), device="cpu", batch_size=8)
    assert lm.strategy_name == "codi"
    _, samples = run_lm_eval(lm, "mentalese_chain", tasks, limit=6)
    codi, tok = load_codi(codi_dir, device="cpu")
    _, records = run_harness(codi.lm, tok, examples[:6], tmp_path / "h", codi.strategy())
    assert [s["resps"][0][0] for s in samples] == [r["samples"][0]["text"] for r in records]
    with pytest.raises(MentaleseError, match="no meaning for a codi model"):
        lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("1+2",), 0)])


def test_bad_model_args_and_gen_kwargs_are_one_line_errors(greedy_lm, model_dir):
    path = str(model_dir)
    with pytest.raises(MentaleseError, match=r"unknown key 'gumbel_tauu' in model_args.soft_thinking"):
        MentaleseLM(pretrained=path, strategy="gumbel", **{"soft_thinking.gumbel_tauu": 0.5})
    with pytest.raises(MentaleseError, match="strategy=gumbel but soft_thinking.mode=dirichlet"):
        MentaleseLM(pretrained=path, strategy="gumbel", **{"soft_thinking.mode": "dirichlet"})
    with pytest.raises(MentaleseError, match="batch_size=auto"):
        MentaleseLM(pretrained=path, batch_size="auto")
    with pytest.raises(MentaleseError, match="strategy=codi needs a saved CODI model"):
        MentaleseLM(pretrained=path, strategy="codi")
    with pytest.raises(MentaleseError, match="gen_kwargs repetition_penalty, typical_p are not supported"):
        greedy_lm.request_decode({"until": [], "typical_p": 0.9, "repetition_penalty": 1.1}, 0)
    short = MentaleseLM(pretrained=path, device="cpu", **{"decode.max_new_tokens": 16})
    with pytest.raises(MentaleseError, match=r"decode.max_new_tokens=16 but the request's gen_kwargs say max_new_tok"):
        short.request_decode({"until": [], "max_gen_toks": 48}, 0)
    config, until = short.request_decode({"until": ["\n\n"], "temperature": 0.7}, 2)
    assert (config.max_new_tokens, config.do_sample, config.temperature, until) == (16, True, 0.7, ["\n\n", "</s>"])
    assert config.seed == 2 * 1_000_003  # group 2 of the call
    sampled = MentaleseLM(pretrained=path, device="cpu", **{"decode.do_sample": True})
    with pytest.raises(MentaleseError, match="no meaning with sampling settings"):
        sampled.loglikelihood([Instance("loglikelihood", {}, ("1+2\n", "1"), 0)])


def test_cli_runs_lm_eval_with_the_model_registered(model_dir, tasks, monkeypatch, capsys):
    assert 'mentalese-lm-eval = "mentalese.lm_eval_cli:main"' in (REPO / "pyproject.toml").read_text()
    import lm_eval.tasks

    from mentalese.lm_eval_cli import main as console_script

    # the CLI as it is, less the index of lm-eval's ~10k built-in task files (15 s)
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", functools.partial(TaskManager, include_defaults=False))
    monkeypatch.setattr(sys, "argv", ["mentalese-lm-eval", "--model", "mentalese", "--model_args",
                                      f"pretrained={model_dir},strategy=token", "--tasks", "mentalese_chain",
                                      "--include_path", str(TASK_DIR), "--limit", "4", "--device", "cpu"])
    console_script()
    table = capsys.readouterr().out
    assert "mentalese_chain" in table and "exact_match" in table and "strict" in table


def test_the_console_script_without_lm_eval_is_one_line(monkeypatch, capsys):
    import importlib.util

    from mentalese import lm_eval_cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    with pytest.raises(SystemExit) as exit_:
        lm_eval_cli.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {lm_eval_cli.INSTALL_HINT}"]


def test_the_console_script_reports_our_errors_in_one_line(model_dir, monkeypatch, capsys):
    from mentalese.lm_eval_cli import main as console_script

    monkeypatch.setattr(sys, "argv", ["mentalese-lm-eval", "--model", "mentalese", "--model_args",
                                      f"pretrained={model_dir},strategy=gumbel", "--tasks", "mentalese_chain",
                                      "--include_path", str(TASK_DIR), "--limit", "1", "--device", "cpu"])
    with pytest.raises(SystemExit) as exit_:
        console_script()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the tokenizer has no single token for the closing tag '</think>'"), err[-3:]
