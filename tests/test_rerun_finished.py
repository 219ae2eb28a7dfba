"""A finished training is left alone: rerunning SFT, CODI, the BoLT M-step or the toy thinking model on a
completed output_dir changes no byte and says the run is complete; a run killed after its last checkpoint
but before the final save is finished without another optimizer step; a half-written checkpoint is skipped.

Each run is 5 steps of a tiny GPT-2 at a constant learning rate, so one extra step would change the weights.
"""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import TrainingArguments

from conftest import sft_config
from mentalese.config import load_config
from mentalese.recipes import resolve_recipe

SHORT = ["max_steps=5", "save_steps=5", "lr_scheduler_type=constant", "warmup_steps=0", "logging_steps=1",
         "per_device_train_batch_size=8", "use_cpu=true", "disable_tqdm=true",
         "task_options={num_steps: 2, num_examples: 64}"]  # 8 steps an epoch: step 5 ends mid-epoch
COMPLETE = "is complete (step 5 of 5); nothing to do"


def run_sft(out: Path, *overrides: str) -> None:
    from mentalese.methods.sft import train_sft

    train_sft(sft_config(out, *SHORT, *overrides))


def run_thinking(out: Path, *overrides: str) -> None:
    from mentalese.methods.thinking_toy import train_thinking_model

    train_thinking_model(sft_config(out, *SHORT, *overrides))


def run_codi(out: Path, *overrides: str) -> None:
    from mentalese.methods.codi.config import CODIConfig
    from mentalese.methods.codi.trainer import train_codi

    train_codi(load_config(CODIConfig, resolve_recipe("codi/chain"),
                           [f"output_dir={out}", "num_latent=2", *SHORT, *overrides]))


def run_mstep(out: Path, *overrides: str) -> None:
    from mentalese.methods.bolt.data_format import pack_sequences
    from mentalese.methods.bolt.mstep import train_on_corpus
    from mentalese.models.loading import load_tokenizer
    from mentalese.models.tiny import resolve_base_model

    init = resolve_base_model("tiny-gpt2", out.parent / f"{out.name}_base", seed=0)
    tokenizer = load_tokenizer(init)
    docs = [tokenizer(f"{i}+{i % 7}={i + i % 7}. ")["input_ids"] for i in range(40)]
    rows = pack_sequences(docs, 16, tokenizer.pad_token_id)[:12]  # 3 steps an epoch at batch 4
    settings = dict(max_steps=5, save_steps=5, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1,
                    per_device_train_batch_size=4, use_cpu=True, disable_tqdm=True, report_to="none",
                    learning_rate=3e-3, seed=0)
    for item in overrides:
        key, value = item.split("=")
        settings[key] = int(value)
    train_on_corpus(TrainingArguments(output_dir=str(out), **settings), init, rows, out)


RUNS = {"sft": run_sft, "codi": run_codi, "mstep": run_mstep, "thinking": run_thinking}
FINAL_FILES = ("model", "trainer_state.json", "train_metrics.json", "train_done.json",
               "done.json")  # the M-step's marker before train_done.json


def snapshot(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def weights(model_dir: Path) -> dict:
    return {f"{p.relative_to(model_dir)}:{k}": v for p in sorted(model_dir.rglob("*.safetensors"))
            for k, v in load_file(str(p)).items()}


def global_step(out: Path) -> int:
    return json.loads((out / "trainer_state.json").read_text())["global_step"]


def remove_final_outputs(out: Path) -> None:
    """What a kill right after the last checkpoint leaves: no final model, state, metrics or marker."""
    for name in FINAL_FILES:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def finish(method: str, out: Path) -> None:
    RUNS[method](out)
    assert global_step(out) == 5 and (out / "checkpoint-5").is_dir()


@pytest.mark.parametrize("method", list(RUNS))
def test_rerun_of_a_finished_run_changes_nothing(method, tmp_path, caplog, one_thread):
    out = tmp_path / "run"
    finish(method, out)
    before = snapshot(out)
    with caplog.at_level(logging.INFO, logger="mentalese"):
        RUNS[method](out)
    assert snapshot(out) == before  # weights, trainer state, checkpoints, config: every byte
    assert f"run in {out} {COMPLETE}" in caplog.text


@pytest.mark.parametrize("method", list(RUNS))
def test_killed_before_the_final_save_finishes_without_another_step(method, tmp_path, one_thread):
    """Trainer resumed from checkpoint-5 of 5 would take a 6th step (it checks max_steps only after a step)."""
    out = tmp_path / "run"
    finish(method, out)
    expected = weights(out / "model")
    remove_final_outputs(out)
    RUNS[method](out)
    assert global_step(out) == 5 and not (out / "checkpoint-6").exists()
    got = weights(out / "model")
    assert got.keys() == expected.keys() and all((got[k] == expected[k]).all() for k in got)
    assert json.loads((out / "train_metrics.json").read_text())["resumed_from"].endswith("checkpoint-5")


@pytest.mark.parametrize("method", ["mstep", "thinking"])
def test_resume_skips_a_half_written_checkpoint(method, tmp_path, one_thread):
    """checkpoint-4 killed before its trainer_state.json: the run continues from checkpoint-2."""
    out = tmp_path / "run"
    RUNS[method](out, "max_steps=2", "save_steps=2")
    remove_final_outputs(out)  # as if killed after checkpoint-2 of a 4-step run
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-4")
    (out / "checkpoint-4" / "trainer_state.json").unlink()
    RUNS[method](out, "max_steps=4", "save_steps=2")
    assert json.loads((out / "train_metrics.json").read_text())["resumed_from"].endswith("checkpoint-2")
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3, 4]


def test_epoch_based_run_is_finished_from_its_last_checkpoint(tmp_path, caplog, one_thread):
    """Half an epoch (4 of 8 steps): the planned steps come from Trainer's own count."""
    out, epochs = tmp_path / "run", ["max_steps=-1", "num_train_epochs=0.5", "save_steps=4"]
    run_sft(out, *epochs)
    expected = weights(out / "model")
    remove_final_outputs(out)
    run_sft(out, *epochs)
    assert global_step(out) == 4 and not (out / "checkpoint-5").exists()
    got = weights(out / "model")
    assert all((got[k] == expected[k]).all() for k in expected)
    before = snapshot(out)
    with caplog.at_level(logging.INFO, logger="mentalese"):
        run_sft(out, *epochs)
    assert snapshot(out) == before and f"run in {out} is complete (step 4 of 4)" in caplog.text


def test_a_shorter_rerun_of_a_finished_run_is_refused(tmp_path, one_thread):
    from mentalese.errors import MentaleseError

    out = tmp_path / "run"
    finish("sft", out)
    before = snapshot(out)
    with pytest.raises(MentaleseError, match=r"checkpoint-5 is past the 3 steps this config trains for"):
        run_sft(out, "max_steps=3")
    assert snapshot(out) == before
