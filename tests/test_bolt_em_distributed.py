"""`mentalese train bolt/toy_chain` (BoLT EM) under torchrun (2 CPU processes, gloo) gives what one process gives.

One EM iteration on a tiny toy corpus (warm start on teacher thoughts, E-step, M-step, evaluation), run
in this process with a batch of 8 and under `python -m torch.distributed.run --nproc_per_node 2` with 4
rows per process (the same global batch). Checked: the run completes and prints its summary once; the
M-step losses agree within 1e-5 (DDP equals one big batch, see docs/scale.md; seq_len=16 keeps the 4
steps inside the first epoch); the E-step of iteration 1 (every proposal, which one was selected, the
selected thoughts) and both evaluations' predictions are identical. The E-step and the evaluation are
seeded by shard index only, and the two runs' models differ by float rounding (~1e-6), which moves the
log-weights in the last digits but flips no sampled token, selection or greedy argmax here.
Then a resumed 2-process run (both evaluations and one E-step shard deleted) redoes just those and
writes the same files: every process takes the same resume path.
"""

import json
import re
import shutil

import pytest
import torch

from generation_worker import run_checked, torchrun
from mentalese.commands.cli import main
from mentalese.methods.bolt.estep import read_estep

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread"),  # one_thread: see conftest
              pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")]

LOSS_TOLERANCE = 1e-5
TIMINGS = ("proposer_sampling_seconds", "proposer_scoring_seconds", "proposer_scoring_over_sampling")
# 24 documents (8 with teacher thoughts, 16 x 2 chunks for the E-step, 4 shards), 4 M-step steps over
# 16-token rows (55 rows in the warm start, 64 in iteration 1: 4 x 8 rows stay in the first epoch), a
# random model with larger weights (0.05) and a learning rate at which the E-step closes some thoughts (15 of
# 32 chunks get one) and the evaluations do not decode one string for every example
SETTINGS = ["model_name_or_path=tiny-gpt2", "toy_options.documents=24", "teacher_docs=8", "tiny_model_options={n_positions: 256, initializer_range: 0.05}",
            "seq_len=16", "max_steps=4", "save_steps=1000", "logging_steps=1", "learning_rate=1e-3",
            "lr_scheduler_type=constant", "warmup_steps=0", "em_iterations=1",
            "estep.num_samples=2", "estep.max_thought_tokens=16", "estep.shard_size=8",
            "prior_probability=0.5", "estep.proposal=posterior",  # pinned: the toy recipe's own choices may change
            "task_options.num_examples=10", "eval_max_new_tokens=16"]


def bolt_em(out, batch: int) -> list[str]:
    return ["train", "bolt/toy_chain", f"output_dir={out}", f"per_device_train_batch_size={batch}", *SETTINGS]


def summary_of(stdout: str) -> dict:
    """The printed summary: the one JSON object in stdout that starts a line with '{' and holds "iterations"."""
    assert stdout.count('"iterations"') == 1, stdout[-3000:]  # printed once, not once per process
    return json.JSONDecoder().raw_decode(stdout[stdout.index('{\n  "iterations"'):])[0]  # a model line follows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bolt_em_ddp")
    two = run_checked(torchrun(2, "-m", "mentalese", *bolt_em(root / "two", 4)), timeout=300)
    return root, two


def _losses(run_dir) -> list[float]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [h["loss"] for h in history if "loss" in h]


def _predictions(eval_dir) -> list[dict]:
    return [json.loads(line) for line in (eval_dir / "predictions.jsonl").read_text().splitlines()]


def _numbers(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, float) and not k.startswith(TIMINGS)}


def _others(row: dict) -> dict:
    return {k: v for k, v in row.items() if not isinstance(v, float)}


def test_two_processes_match_one(runs, capsys):
    root, two = runs
    one_dir, two_dir = root / "one", root / "two"
    assert main(bolt_em(one_dir, 8)) == 0
    s1, s2 = summary_of(capsys.readouterr().out), summary_of(two.stdout)
    assert [r["iteration"] for r in s2["iterations"]] == [0, 1]
    assert json.loads((two_dir / "summary.json").read_text()) == s2
    # the same rows, up to timings and the last digits of the E-step's ELBO estimates
    for a, b in zip(s1["iterations"], s2["iterations"], strict=True):
        assert _others(b) == _others(a)
        assert _numbers(b) == pytest.approx(_numbers(a), rel=1e-4, abs=1e-4, nan_ok=True)

    # the work was split: each process computed its round-robin half of the E-step's 4 shards
    assert "E-step: process 0/2 computes shards [0, 2] (0 of 4 already done)" in two.stderr
    assert "E-step: process 1/2 computes shards [1, 3] (0 of 4 already done)" in two.stderr

    for it in ("iter_0", "iter_1"):
        l1, l2 = _losses(one_dir / it / "mstep"), _losses(two_dir / it / "mstep")
        assert len(l1) == len(l2) == 4
        assert max(abs(a - b) for a, b in zip(l1, l2)) <= LOSS_TOLERANCE, (it, l1, l2)
        p1, p2 = _predictions(one_dir / it / "eval"), _predictions(two_dir / it / "eval")
        assert p1 == p2 and len(p1) == 10, it
        assert len({s["text"] for r in p1 for s in r["samples"]}) > 3  # not one string for every example

    e1, e2 = read_estep(one_dir / "iter_1" / "estep"), read_estep(two_dir / "iter_1" / "estep")
    keys = ("chunk_id", "thought", "selected", "proposals", "closed")
    assert [{k: r[k] for k in keys} for r in e1] == [{k: r[k] for k in keys} for r in e2]
    assert len(e1) == 32 and sum(r["thought"] is not None for r in e1) >= 5


def test_resume_under_two_processes(runs):
    """Finished stages are skipped on every process alike; the deleted E-step shard and evaluation are redone."""
    root, _ = runs
    two_dir = root / "two"
    it1 = two_dir / "iter_1"
    before = {p: (it1 / p).read_bytes() for p in ("estep/shard-00003.jsonl", "eval/predictions.jsonl")}
    warm = (two_dir / "iter_0" / "mstep" / "model" / "model.safetensors").stat().st_mtime_ns
    for p in ("done.json", "eval/metrics.json", "eval/predictions.jsonl", "estep/shard-00003.jsonl",
              "estep/shard-00003.stats.json"):
        (it1 / p).unlink()
    shutil.rmtree(two_dir / "iter_0" / "eval")  # iteration 0's evaluation is redone too
    again = run_checked(torchrun(2, "-m", "mentalese", *bolt_em(two_dir, 4)), timeout=300)
    assert "E-step: process 0/2 computes shards [3] (3 of 4 already done)" in again.stderr
    assert "E-step: process 1/2 computes shards [] (3 of 4 already done)" in again.stderr
    assert not re.search(r"resuming from|'loss':", again.stdout + again.stderr)  # no M-step retrained
    assert (two_dir / "iter_0" / "mstep" / "model" / "model.safetensors").stat().st_mtime_ns == warm
    assert {p: (it1 / p).read_bytes() for p in before} == before
    assert (it1 / "done.json").exists() and summary_of(again.stdout)["iterations"][1]["iteration"] == 1
