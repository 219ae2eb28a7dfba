"""iCoT-SI (methods/icot): the removal on hand-built batches in the official layout, the smoothing offsets,
the schedule, the optimizer reset, bad input, and short real trainings (API, CLI, rerun, resume)."""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from mentalese.api import train, train_config
from mentalese.commands.cli import main
from mentalese.errors import MentaleseError
from mentalese.methods.formatting import tokenize_sft_example
from mentalese.methods.icot import (
    CoTSpans,
    RemovalSchedule,
    icot_loss,
    lambda_distribution,
    remove_cot_official,
    remove_cot_tokens,
    sample_offsets,
    should_reset_optimizer,
    steps_per_removed_token,
)
from mentalese.methods.icot.data import tokenize_icot_example
from mentalese.tasks.example import Example

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

EOS, X = 50, -100
#        q     q   eos  c1  c2  c3  c4 eos  a1  a2 eos
ROW0 = [11, 12, EOS, 21, 22, 23, 24, EOS, 31, 32, EOS]
ROW1 = [13, EOS, 25, 26, EOS, 33, EOS, EOS, EOS, EOS, EOS]  # padded with eos, as the official collator pads


def official_batch():
    ids = torch.tensor([ROW0, ROW1])
    labels = torch.tensor([[X, X, X, *ROW0[3:]], [X, X, 25, 26, EOS, 33, EOS, X, X, X, X]])
    return ids, labels


def test_left_removal_by_hand():
    ids, labels = official_batch()
    out = remove_cot_official(ids, labels, EOS, scheduled_to_remove=1, offsets=[1, 0], keep_position=True)
    assert out.input_ids.tolist() == [[11, 12, EOS, 23, 24, EOS, 31, 32, EOS],
                                      [13, EOS, 26, EOS, 33, EOS, EOS, EOS, EOS]]
    assert out.labels.tolist() == [[X, X, X, 23, 24, EOS, 31, 32, EOS],
                                   [X, X, 26, EOS, 33, EOS, X, X, X]]
    # from the first eos on, positions jump by the removed count (official `[removal_from-1:] +=`)
    assert out.position_ids.tolist() == [[0, 1, 4, 5, 6, 7, 8, 9, 10], [0, 2, 3, 4, 5, 6, 7, 8, 9]]
    assert out.removed == [2, 1] and out.capped == [False, False] and not out.all_cot_removed
    assert out.lengths == [9, 6]
    assert remove_cot_official(ids, labels, EOS, 1, [1, 0]).position_ids is None


def test_right_removal_by_hand():
    ids, labels = official_batch()
    out = remove_cot_official(ids, labels, EOS, scheduled_to_remove=1, offsets=[1, 0], side="right")
    assert out.input_ids.tolist() == [[11, 12, EOS, 21, 22, EOS, 31, 32, EOS],
                                      [13, EOS, 25, EOS, 33, EOS, EOS, EOS, EOS]]


@pytest.mark.parametrize("scheduled", [3, math.inf])
def test_removing_beyond_the_cot_is_capped_and_said(scheduled):
    ids, labels = official_batch()
    out = remove_cot_official(ids, labels, EOS, scheduled, offsets=[2, 0])  # row 0: 5 > 4 tokens, row 1: 3 > 2
    assert out.input_ids.tolist() == [[11, 12, EOS, EOS, 31, 32, EOS], [13, EOS, EOS, 33, EOS, EOS, EOS]]
    assert out.labels.tolist() == [[X, X, X, EOS, 31, 32, EOS], [X, X, EOS, 33, EOS, X, X]]
    assert out.removed == [4, 2] and out.capped == [True, True] and out.all_cot_removed  # separator eos stays
    exact = remove_cot_official(ids, labels, EOS, 2, offsets=[2, 0])  # row 0 loses exactly its 4 tokens
    assert exact.capped == [True, True] and exact.removed == [4, 2]
    short = remove_cot_official(ids, labels, EOS, 1, offsets=[2, 0])
    assert short.capped == [False, False]


def test_removal_rejects_bad_spans_and_sides():
    ids, labels = official_batch()
    with pytest.raises(MentaleseError, match="removal_side must be one of left, right"):
        remove_cot_official(ids, labels, EOS, 1, [0, 0], side="middle")
    with pytest.raises(MentaleseError, match="one entry per row"):
        remove_cot_official(ids, labels, EOS, 1, [0])
    with pytest.raises(MentaleseError, match="has 1 eos tokens; the official layout needs 3"):
        remove_cot_official(torch.tensor([[1, 2, EOS, 3]]), torch.tensor([[X, X, X, 3]]), EOS, 1, [0])
    with pytest.raises(MentaleseError, match="bad CoT span"):
        remove_cot_tokens(ids, labels, CoTSpans([0, 2], [7, 4], [11, 7]), 1, [0, 0])


def test_loss_is_the_token_mean_over_labels():
    logits = torch.zeros(1, 4, 3)
    logits[0, 0, 1] = math.log(2.0)  # position 0 predicts label[1] = 1 with p = 2/4
    logits[0, 2, 2] = math.log(3.0)  # position 2 predicts label[3] = 2 with p = 3/5
    out = icot_loss(logits, torch.tensor([[X, 1, X, 2]]))
    assert out.loss.item() == pytest.approx((-math.log(0.5) - math.log(0.6)) / 2)
    assert int(out.total_tokens) == 2 and int(out.total_correct) == 2


def test_smoothing_distribution_by_hand():
    dist = lambda_distribution(1.0, truncate_length=3)
    e = math.exp(-1)
    assert dist.tolist() == pytest.approx([1 - e, (1 - e) * e, e * e])  # the tail mass e^-2 sits in the last bucket
    d4 = lambda_distribution(4.0)
    assert d4.shape == (100,) and float(d4.sum()) == pytest.approx(1.0)
    assert d4[:3].tolist() == pytest.approx([1 - math.exp(-4), (1 - math.exp(-4)) * math.exp(-4),
                                             (1 - math.exp(-4)) * math.exp(-8)])
    assert lambda_distribution(math.inf, 5).tolist() == [1, 0, 0, 0, 0]
    draws = sample_offsets(dist, 20000, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=3).float() / 20000
    assert freq.tolist() == pytest.approx(dist.tolist(), abs=0.015)
    with pytest.raises(MentaleseError, match="removal_smoothing_lambda must be > 0"):
        lambda_distribution(0.0)


def test_schedule_by_hand():
    assert steps_per_removed_token(25, 8) == 3  # round(3.125)
    assert steps_per_removed_token(20, 8) == 2  # round(2.5): Python rounds halves to even
    assert steps_per_removed_token(3, 8) == 0  # round(0.375): one more token at every step
    s = RemovalSchedule(3)
    assert [s.scheduled(k) for k in range(10)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert [k for k in range(10) if s.changes_at(k)] == [3, 6, 9]
    assert s.first_step_removing(4) == 12
    every = RemovalSchedule(0, remove_start_from=2)
    assert [every.scheduled(k) for k in range(3)] == [3, 4, 5] and every.changes_at(0)
    capped = RemovalSchedule(2, remove_all_when_remove_beyond=2)
    assert [capped.scheduled(k) for k in range(6)] == [0, 0, 1, 1, math.inf, math.inf]
    assert [k for k in range(8) if capped.changes_at(k)] == [2, 4] and capped.first_step_removing(10) == 4
    assert should_reset_optimizer(s, 3, previous_batch_all_removed=False)
    assert not should_reset_optimizer(s, 3, previous_batch_all_removed=True)  # nothing left to remove
    assert not should_reset_optimizer(s, 4, False) and not should_reset_optimizer(s, 3, False, enabled=False)
    with pytest.raises(MentaleseError, match="remove_per_epoch must be > 0"):
        steps_per_removed_token(10, 0)


def test_all_removed_is_the_nocot_row_and_none_removed_the_cot_row():
    from mentalese.models.tiny import char_tokenizer

    tok = char_tokenizer()
    ex = Example("7+5*3", "6", ["7+5=2", "2*3=6"])
    row = tokenize_icot_example(ex, tok, "{question}\n", "The answer is:")
    cot, nocot = (tokenize_sft_example(ex, tok, "{question}\n", c) for c in (True, False))
    assert row.input_ids == cot.input_ids and row.labels == cot.labels
    ids, labels = torch.tensor([row.input_ids]), torch.tensor([row.labels])
    spans = CoTSpans([row.cot_start], [row.cot_end], [len(row.input_ids)])
    gone = remove_cot_tokens(ids, labels, spans, math.inf, [0])
    assert gone.input_ids[0].tolist() == nocot.input_ids and gone.labels[0].tolist() == nocot.labels
    assert gone.removed == [len("7+5=2 2*3=6\n")]  # the separator goes with the CoT (remove_separator)


@pytest.mark.parametrize("override, message", [
    ("remove_per_epoch=0", "remove_per_epoch must be > 0, got 0.0"),
    ("remove_per_epoch=-8", "remove_per_epoch must be > 0"),
    ("remove_every_steps=0", "remove_every_steps must be >= 1, got 0"),
    ("remove_every_steps=4", "set one schedule: remove_per_epoch or remove_every_steps"),
    ("remove_all_when_remove_beyond=0", "remove_all_when_remove_beyond must be >= 1 or inf"),
    ("removal_smoothing_lambda=-1", "removal_smoothing_lambda must be > 0"),
    ("removal_side=up", "removal_side must be one of left, right"),
    ("generated_train_examples=10", "generated_train_examples applies to mult-NxN tasks only"),
])
def test_bad_config_is_one_line(tmp_path, override, message):
    with pytest.raises(MentaleseError, match=message):
        train_config("icot/chain", [f"output_dir={tmp_path}", "remove_every_steps=null", "remove_per_epoch=8",
                                    override])


def test_step_schedule_needs_the_epoch_one_off(tmp_path):
    with pytest.raises(MentaleseError, match="no removal schedule"):
        train_config("icot/chain", [f"output_dir={tmp_path}", "remove_every_steps=null"])
    assert train_config("icot/chain", [f"output_dir={tmp_path}"])[1].remove_every_steps >= 1


# --- short real trainings: a random tiny GPT-2 on 2-step chains ---------------------------------------------
TINY = {"model_name_or_path": "tiny-gpt2", "tiny_model_options": {"n_layer": 2, "n_embd": 32, "n_head": 2},
        "task_options": {"num_steps": 2, "num_examples": 256}, "per_device_train_batch_size": 16,
        "learning_rate": 3e-3, "use_cpu": True, "disable_tqdm": True, "save_steps": 1000, "logging_steps": 2,
        "removal_smoothing_lambda": "inf"}


class AdamSteps(TrainerCallback):
    """AdamW's step count of the first weight after every optimizer step (1 right after a reset)."""

    def __init__(self):
        self.steps = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        inner = getattr(optimizer, "optimizer", optimizer)
        first = inner.param_groups[0]["params"][0]
        self.steps.append(int(inner.state[first]["step"]))


def run_icot(out: Path, **overrides):
    from mentalese.methods.icot.trainer import train_icot

    cfg = train_config("icot/chain", {**TINY, "output_dir": str(out), **overrides})[1]
    seen = AdamSteps()
    return train_icot(cfg, callbacks=[seen]), seen


@pytest.mark.parametrize("reset, expected", [(True, [1, 2, 1, 2, 1, 2, 3, 4]), (False, [1, 2, 3, 4, 5, 6, 7, 8])])
def test_optimizer_state_is_fresh_when_the_count_grows(tmp_path, reset, expected):
    # s(k) = 0, 0, 1, 1, all, all, all, all: the count grows at steps 2 and 4, then nothing is left to remove
    model_dir, seen = run_icot(tmp_path, max_steps=8, remove_every_steps=2, remove_all_when_remove_beyond=2,
                               reset_optimizer=reset)
    assert seen.steps == expected
    metrics = json.loads((tmp_path / "train_metrics.json").read_text())
    assert metrics["icot_optimizer_resets"] == (2 if reset else 0)
    assert metrics["icot_capped_rows"] == 4 * 16 and metrics["icot_first_capped_step"] == 4  # counted, not silent


def test_rows_longer_than_max_len_train_are_counted(tmp_path):
    # rows are 6 (prompt) + 12 (CoT + newline) + 17 (answer + eos) tokens; <= 25 needs s >= 10, and s(k) = k
    run_icot(tmp_path, max_steps=12, remove_every_steps=1, max_len_train=25)
    metrics = json.loads((tmp_path / "train_metrics.json").read_text())
    assert metrics["icot_skipped_long_rows"] == 10 * 16 and metrics["icot_rows"] == 12 * 16


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_resumed_run_equals_uninterrupted_and_rerun_changes_nothing(tmp_path, caplog):
    steps = dict(remove_every_steps=3, removal_smoothing_lambda=4.0, save_steps=4)
    whole, _ = run_icot(tmp_path / "whole", max_steps=8, **steps)
    run_icot(tmp_path / "cut", max_steps=4, **steps)  # "crash" after step 4 (its checkpoint-4 is kept)
    (tmp_path / "cut" / "train_done.json").unlink()
    resumed, seen = run_icot(tmp_path / "cut", max_steps=8, **steps)
    assert seen.steps == [2, 3, 1, 2]  # resets at 6: the state since the reset at step 3 came back from the checkpoint
    a = {k: v for k, v in _weights(whole).items()}
    b = _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    before = _digest(tmp_path / "whole")
    with caplog.at_level("INFO"):
        run_icot(tmp_path / "whole", max_steps=8, **steps)
    assert "is complete (step 8 of 8); nothing to do" in caplog.text
    assert _digest(tmp_path / "whole") == before


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_train_api_internalizes_the_cot(tmp_path, tiny_chain_run):
    """From the session's CoT-SFT model (2-step chains), which writes its CoT: once all CoT is removed the model
    answers at once, in the No-CoT format `mentalese eval` reads. (Its accuracy stays near chance: this 2-layer
    model cannot compose two operations in one pass; No-CoT-SFT cannot either, docs/LOG.md.)"""
    from mentalese.api import evaluate

    def outputs(model, name):
        evaluate(model=str(model), benchmark="chain", limit=40, device="cpu", task_options={"num_steps": 2},
                 decode={"max_new_tokens": 24}, output_dir=str(tmp_path / name), progress=False)
        return [json.loads(line)["samples"][0]["text"] for line in (tmp_path / name / "predictions.jsonl").open()]

    direct = lambda texts: sum(t.startswith("The answer is:") for t in texts)  # noqa: E731
    assert direct(outputs(tiny_chain_run / "model", "before")) == 0  # the start model writes its CoT first
    model_dir = train("icot/chain", {"output_dir": str(tmp_path / "run"), "task_options": {"num_steps": 2,
                                     "num_examples": 2000}, "model_name_or_path": str(tiny_chain_run / "model"),
                                     "max_steps": 60, "remove_every_steps": 3, "disable_tqdm": True,
                                     "use_cpu": True, "logging_steps": 10, "save_steps": 1000})
    metrics = json.loads((tmp_path / "run" / "train_metrics.json").read_text())
    assert metrics["all_cot_removed_from_step"] == 36 and metrics["icot_capped_rows"] > 0  # 12 tokens, 1 per 3 steps
    assert direct(outputs(model_dir, "after")) >= 38


def test_cli_train(tmp_path, capsys):
    args = ["train", "icot/chain", f"output_dir={tmp_path}", "model_name_or_path=tiny-gpt2",
            "tiny_model_options={n_layer: 1, n_embd: 32, n_head: 2}", "task_options={num_steps: 2, num_examples: 64}",
            "max_steps=3", "remove_every_steps=1", "use_cpu=true", "disable_tqdm=true", "save_steps=100"]
    assert main(args) == 0
    assert (tmp_path / "model" / "model.safetensors").is_file() and (tmp_path / "train_done.json").is_file()
    capsys.readouterr()
    assert main(["train", "icot/chain", f"output_dir={tmp_path}", "remove_every_steps=-1"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.endswith("remove_every_steps must be >= 1, got -1") and len(err.splitlines()) == 1
