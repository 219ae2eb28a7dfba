"""BoLT driver: warm start + one EM iteration on a tiny toy corpus, a crash at each stage, bad corpora."""

import json

import pytest

import mentalese.methods.bolt.em as em
from mentalese.commands.cli import main
from mentalese.config import load_config
from mentalese.errors import MentaleseError
from mentalese.methods.bolt.config import BoltConfig
from mentalese.recipes import resolve_recipe

SMALL = ["toy_options.documents=24", "teacher_docs=8", "max_steps=6", "save_steps=3", "per_device_train_batch_size=8",
         "task_options.num_examples=10", "estep.num_samples=2", "estep.max_thought_tokens=16", "estep.shard_size=10",
         "em_iterations=1", "eval_max_new_tokens=24", "logging_steps=2"]


def small(tmp_path, *extra):
    return load_config(BoltConfig, resolve_recipe("bolt/toy_chain"), SMALL + [f"output_dir={tmp_path}", *extra])


class Crash(RuntimeError):
    pass


def test_em_crash_in_iteration_then_resume(tmp_path, monkeypatch):
    real_eval = em.evaluate_model
    calls = []

    def crashing_eval(cfg, model_dir, out_dir, latent):
        calls.append(out_dir)
        if "iter_1" in str(out_dir) and len(calls) == 2:
            raise Crash
        return real_eval(cfg, model_dir, out_dir, latent)

    monkeypatch.setattr(em, "evaluate_model", crashing_eval)
    with pytest.raises(Crash):
        em.run_bolt(small(tmp_path))
    warm = tmp_path / "iter_0" / "mstep" / "model" / "model.safetensors"
    m1 = tmp_path / "iter_1" / "mstep" / "model" / "model.safetensors"
    stamps = warm.stat().st_mtime_ns, m1.stat().st_mtime_ns
    assert not (tmp_path / "iter_1" / "done.json").exists()
    summary = em.run_bolt(small(tmp_path))  # resumes: nothing trained or sampled again
    assert (warm.stat().st_mtime_ns, m1.stat().st_mtime_ns) == stamps
    its = summary["iterations"]
    assert [r["iteration"] for r in its] == [0, 1] and its[1]["kind"] == "EM K=2 importance"
    assert its[1]["proposer_chunks"] == 2 * (24 - 8)  # every inferred chunk has a record
    assert its[1]["proposer_elbo_k1_chunks"] + its[1]["proposer_unclosed_proposals"] >= 1
    train = json.loads((tmp_path / "iter_1" / "mstep" / "train_metrics.json").read_text())
    teacher = json.loads((tmp_path / "iter_0" / "mstep" / "train_metrics.json").read_text())
    assert teacher["chunks_with_thought"] == 16  # 8 teacher documents x 2 chunks
    assert train["chunks_with_thought"] >= 16 and train["chunks"] == 48
    assert json.loads((tmp_path / "teacher" / "stats.json").read_text())["failed"] == 0
    prompt = json.loads((tmp_path / "iter_1" / "eval" / "metrics.json").read_text())["prompt"]
    assert prompt == "<s>Q: {question}. <|start_of_latent|><|prior|>"


def test_raw_mode_and_bad_corpora(tmp_path):
    summary = em.run_bolt(small(tmp_path / "raw", "mode=raw", "max_steps=2"))
    assert summary["iterations"][0]["kind"] == "raw"
    raw_prompt = json.loads((tmp_path / "raw" / "iter_0" / "eval" / "metrics.json").read_text())["prompt"]
    assert "latent" not in raw_prompt
    with pytest.raises(MentaleseError, match="not found"):
        em.run_bolt(small(tmp_path / "a", "corpus=/no/such.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "Fine. Text."}\n{"body": "no text field"}\n')
    with pytest.raises(MentaleseError, match="'text' field"):
        em.run_bolt(small(tmp_path / "b", f"corpus={bad}"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": ""}\n{"text": "   "}\n')
    with pytest.raises(MentaleseError, match="no non-empty documents"):
        em.run_bolt(small(tmp_path / "c", f"corpus={empty}"))
    with pytest.raises(MentaleseError, match="nothing for the E-step"):
        em.run_bolt(small(tmp_path / "d", "teacher_docs=null", "toy_options.documents=4", "max_steps=1"))


@pytest.mark.parametrize("args, message", [
    (["train", "bolt/toy_chain", "estep.selection=argmax"], "selection must be one of"),
    (["train", "bolt/toy_chain", "mode=fancy"], "mode must be one of"),
    (["train", "bolt/toy_chain", "prior_probability=2"], "prior_probability"),
    (["demo", "bolt-toy", "variants=[em-k9]"], "unknown variants"),
])
def test_cli_errors_are_one_line(args, message, capsys, tmp_path):
    assert main(args + [f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mentalese: error:") and message in err and len(err.splitlines()) == 1
