"""The Python API (mentalese/api.py): train from a recipe, evaluate, load and decode; README's example.

Tiny runs: a few optimiser steps of the shipped chain recipes on 2-step problems.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mentalese
from mentalese import api
from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.decoding.strategies import DiscreteStrategy
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import EvalConfig, evaluate as harness_evaluate
from mentalese.methods.bolt import em
from mentalese.methods.bolt.data_format import BoltTokenIds
from mentalese.methods.codi.model import load_codi
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.tasks.registry import get_benchmark, load_benchmark

README = Path(__file__).resolve().parents[1] / "README.md"
CPU = {"use_cpu": True, "disable_tqdm": True, "report_to": "none", "save_steps": 100, "logging_steps": 1}
CHAIN = {"task_options": {"num_steps": 2, "num_examples": 64}, "per_device_train_batch_size": 8}
BOLT = ["toy_options.documents=16", "teacher_docs=8", "max_steps=2", "per_device_train_batch_size=8",
        "task_options.num_examples=4", "estep.num_samples=2", "estep.max_thought_tokens=8", "estep.shard_size=8",
        "em_iterations=1", "eval_max_new_tokens=16", "save_steps=100", "logging_steps=1"]
EVAL = {"benchmark": "chain", "limit": 4, "task_options": {"num_steps": 2}, "decode.max_new_tokens": 16}
QUESTIONS = ["3+4*2", "7-5*3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("api")
    sft = mentalese.train("sft/chain_cot", {"output_dir": str(root / "sft"), "max_steps": 3, **CHAIN, **CPU})
    codi = mentalese.train("codi/chain", [f"output_dir={root / 'codi'}", "max_steps=2", "num_latent=1",
                                          "task_options={num_steps: 2, num_examples: 64}",
                                          "per_device_train_batch_size=8", "use_cpu=true", "disable_tqdm=true",
                                          "save_steps=100"])
    bolt = mentalese.train("bolt/toy_chain", BOLT + [f"output_dir={root / 'bolt'}"])
    return {"root": root, "sft": sft, "codi": codi, "bolt": bolt}


def test_train_runs_each_family_and_returns_its_model(runs):
    assert runs["sft"] == runs["root"] / "sft" / "model" and (runs["sft"] / "config.json").is_file()
    assert runs["codi"] == runs["root"] / "codi" / "model" and (runs["codi"] / "codi_config.json").is_file()
    assert runs["bolt"] == runs["root"] / "bolt" / "iter_1" / "mstep" / "model"
    summary = json.loads((runs["root"] / "bolt" / "summary.json").read_text())
    assert [r["iteration"] for r in summary["iterations"]] == [0, 1]
    assert api.train("sft/chain_cot", {"output_dir": str(runs["root"] / "sft"), "max_steps": 3, **CHAIN, **CPU}) \
        == runs["sft"]  # a finished run is left as it is


def test_evaluate_plain_and_codi_recognised_by_itself(runs, tmp_path):
    plain = mentalese.evaluate(model=str(runs["sft"]), output_dir=str(tmp_path / "plain"), progress=False, **EVAL)
    assert plain["strategy"] == "token" and plain["num_examples"] == 4 and "method" not in plain
    auto = mentalese.evaluate(model=str(runs["codi"]), output_dir=str(tmp_path / "auto"), progress=False, **EVAL)
    assert auto["strategy"] == "codi" and auto["method"] == "codi" and auto["num_latent"] == 1
    # what the CODI strategy gives, through the harness by hand
    model, tok = load_codi(runs["codi"], device="cpu")
    cfg = api.eval_config(None, {**EVAL, "model": str(runs["codi"])})
    by_hand = harness_evaluate(model.lm, tok, load_benchmark("chain", "test", limit=4, num_steps=2),
                               get_benchmark("chain"), cfg.decode, model.strategy(), output_dir=tmp_path / "hand",
                               progress=False)
    assert auto["accuracy"] == by_hand["accuracy"] and auto["mean_generated_tokens"] == by_hand["mean_generated_tokens"]
    texts = [json.loads(line)["samples"][0]["text"] for line in (tmp_path / "auto" / "predictions.jsonl").open()]
    assert texts == [json.loads(line)["samples"][0]["text"] for line in (tmp_path / "hand" / "predictions.jsonl").open()]
    # an EvalConfig and keywords together: the keywords win
    again = mentalese.evaluate(EvalConfig(model=str(runs["codi"]), strategy="codi"), output_dir=str(tmp_path / "x"),
                               progress=False, **EVAL)
    assert again["accuracy"] == auto["accuracy"]


@pytest.mark.parametrize("values, message", [
    ({"strategy": "codi"}, "strategy=codi needs a saved CODI model"),
    ({"strategy": "greedy"}, "strategy must be one of auto, token, soft_thinking, codi"),
    ({"strategy": "token", "soft_thinking": {"mode": "gumbel"}}, "strategy=token but soft_thinking"),
])
def test_strategy_mismatch_on_a_plain_model(runs, tmp_path, values, message):
    with pytest.raises(MentaleseError, match=message):
        mentalese.evaluate(model=str(runs["sft"]), output_dir=str(tmp_path), **{**EVAL, **values})
    assert not (tmp_path / "config.yaml").exists()  # refused before anything ran


@pytest.mark.parametrize("values, message", [
    ({"strategy": "token"}, "is a saved CODI model: strategy=token does not apply"),
    ({"soft_thinking": {"mode": "vanilla"}}, "is a saved CODI model: soft_thinking"),
])
def test_strategy_mismatch_on_a_codi_model(runs, tmp_path, values, message):
    with pytest.raises(MentaleseError, match=message):
        mentalese.evaluate(model=str(runs["codi"]), output_dir=str(tmp_path), **{**EVAL, **values})


def test_load_plain_and_codi_decode_with_their_strategy(runs):
    prompts = [q + "\n" for q in QUESTIONS]
    plain = mentalese.load(runs["sft"], device="cpu")
    assert plain.kind == "plain" and plain.prompt("3+4*2") == "3+4*2\n"
    model, tok = load_model_and_tokenizer(runs["sft"], dtype="float32", device="cpu")
    expected = decode(model, tok, prompts, DecodeConfig(max_new_tokens=12), DiscreteStrategy())
    assert [r.token_ids for r in plain.decode(prompts, max_new_tokens=12)] == [r.token_ids for r in expected]

    codi = mentalese.load(runs["codi"], device="cpu")
    assert codi.kind == "codi" and codi.codi.spec.num_latent == 1
    model, tok = load_codi(runs["codi"], device="cpu")
    expected = decode(model.lm, tok, prompts, DecodeConfig(max_new_tokens=12), model.strategy())
    got = codi.decode(prompts, max_new_tokens=12)
    assert [r.token_ids for r in got] == [r.token_ids for r in expected] and got[0].num_steps > got[0].num_tokens
    with pytest.raises(MentaleseError, match="strategy=codi needs a saved CODI model"):
        plain.strategy("codi")
    with pytest.raises(MentaleseError, match="record_thoughts applies to CODI models only"):
        plain.strategy(record_thoughts=True)
    soft = plain.strategy(soft_thinking={"mode": "gumbel", "think_open": "", "think_close": "="})  # char tokens
    assert type(soft).__name__ == "SoftThinkingStrategy"


def test_load_bolt_latent_model_with_its_prompt_layout(runs, tmp_path):
    loaded = mentalese.load(runs["bolt"], device="cpu")
    assert loaded.kind == "bolt"
    sol = BoltTokenIds.from_tokenizer(loaded.tokenizer).sol
    cfg = api.train_config("bolt/toy_chain", BOLT + [f"output_dir={runs['root'] / 'bolt'}"])[1]
    assert loaded.prompt_template(cfg.eval_prompt) == em.eval_prompt(cfg, loaded.tokenizer, latent=True)
    prompts = [loaded.prompt(q, cfg.eval_prompt) for q in QUESTIONS]
    assert prompts[0] == "<s>Q: 3+4*2. <|start_of_latent|><|prior|>"
    model, tok = load_model_and_tokenizer(runs["bolt"], dtype="float32", device="cpu")
    expected = decode(model, tok, prompts, DecodeConfig(max_new_tokens=12, stop_token_ids=[sol]), DiscreteStrategy())
    assert [r.token_ids for r in loaded.decode(prompts, max_new_tokens=12)] == [r.token_ids for r in expected]
    # the raw baseline of a BoLT run has the tokens but was never trained with thoughts: a plain model
    raw_model = tmp_path / "raw" / "iter_0" / "mstep" / "model"
    shutil.copytree(runs["bolt"], raw_model)
    config = (runs["root"] / "bolt" / "config.yaml").read_text()
    (tmp_path / "raw" / "config.yaml").write_text(re.sub(r"(?m)^mode: em$", "mode: raw", config))
    assert mentalese.load(raw_model, device="cpu").kind == "plain"


def test_eval_of_a_bolt_model_uses_its_layout_as_the_bolt_run_does(runs, tmp_path):
    """`mentalese eval` of a latent BoLT model: the prompt in its M-step layout, decoding stops at the next SOL;
    the same predictions as run_bolt's own evaluation (em.evaluate_model). Before the fix: the plain prompt."""
    cfg = api.train_config("bolt/toy_chain", BOLT + [f"output_dir={runs['root'] / 'bolt'}"])[1]
    ours = mentalese.evaluate(model=str(runs["bolt"]), benchmark=cfg.task, split=cfg.eval_split, limit=4,
                              task_options=cfg.task_options, prompt=cfg.eval_prompt, output_dir=str(tmp_path / "a"),
                              decode={"max_new_tokens": cfg.eval_max_new_tokens, "batch_size": cfg.eval_batch_size,
                                      "add_special_tokens": True}, progress=False)
    cfg.eval_limit = 4
    reference = em.evaluate_model(cfg, runs["bolt"], tmp_path / "b", latent=True, processes=None)
    assert ours["method"] == "bolt" and ours["accuracy"] == reference["accuracy"]
    read = lambda d: [json.loads(line)["samples"][0]["text"] for line in (d / "predictions.jsonl").open()]  # noqa: E731
    assert read(tmp_path / "a") == read(tmp_path / "b")


def test_bolt_teacher_synthesis_through_train(tmp_path, monkeypatch):
    out = api.train("bolt/toy_chain", BOLT + [f"output_dir={tmp_path}", "mode=synthesize"])
    assert out == tmp_path / "teacher"
    thoughts = json.loads((out / "thoughts.json").read_text())
    assert len(thoughts) == 16 and not (tmp_path / "iter_0").exists()  # 8 teacher documents x 2 chunks
    stamp = (out / "thoughts.json").stat().st_mtime_ns
    model = api.train("bolt/toy_chain", BOLT + [f"output_dir={tmp_path}", "mode=teacher"])  # reuses them
    assert model == tmp_path / "iter_0" / "mstep" / "model" and (out / "thoughts.json").stat().st_mtime_ns == stamp


def test_recipe_family_errors(tmp_path):
    with pytest.raises(MentaleseError, match="is an evaluation recipe .method: eval.; run it with `mentalese eval"):
        api.train("soft_thinking/chain_toy")
    bare = tmp_path / "bare.yaml"
    bare.write_text("max_steps: 1\n")
    with pytest.raises(MentaleseError, match=r"does not say its method; add `method: sft\|codi\|bolt\|icot\|coconut`"):
        api.train(bare)
    with pytest.raises(MentaleseError, match="is a training recipe .method: sft."):
        api.eval_config("sft/chain_cot")
    with pytest.raises(MentaleseError, match="unknown key 'method'"):  # an override is a config field, not the family
        api.train_config("sft/chain_cot", ["method=codi"])


def test_import_stays_cheap():
    code = "import sys, mentalese; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert mentalese.train is api.train and mentalese.load is api.load and mentalese.evaluate is api.evaluate


def readme_python_api() -> str:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.S))


def test_readme_python_api_example_runs(tmp_path, monkeypatch, one_thread):
    """README's "## Python API" code, verbatim but for shorter training and evaluation (the substitutions)."""
    code = readme_python_api()
    fewer = ', "task_options.num_examples": 64'  # training examples: the data set is built before step 1
    shorter = {'"max_steps": 300': '"max_steps": 3' + fewer, '"max_steps": 200': '"max_steps": 2' + fewer,
               "limit=100": "limit=4"}
    for long, short in shorter.items():
        assert long in code, long
        code = code.replace(long, short)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    assert json.loads((tmp_path / "runs/api/codi/eval/metrics.json").read_text())["strategy"] == "codi"
