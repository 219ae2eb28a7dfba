"""Crash-safe resume: SIGKILL a real `mentalese train` process (SFT and CODI recipes), run the same command again,
and the final weights equal an uninterrupted run's (max abs diff <= 1e-6 on CPU).

The kill lands at a seeded random time after the first checkpoint is complete (set
MENTALESE_CRASH_SEED to draw another; the seed and the delay are in every failure message), or right
inside a checkpoint write, the moment a resume from the newest directory would break.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from mentalese.methods.checkpoints import checkpoint_is_complete, last_complete_checkpoint

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("MENTALESE_CRASH_SEED", "6"))
COMMON = ["max_steps=16", "save_steps=2", "per_device_train_batch_size=8", "logging_steps=1", "disable_tqdm=true",
          "use_cpu=true", "warmup_steps=0", "task_options={num_steps: 2, num_examples: 256}"]
COMMANDS = {
    "sft": (["train", "sft/chain_cot", *COMMON], ["model/model.safetensors"]),
    "codi": (["train", "codi/chain", "num_latent=2", *COMMON],
             ["model/model/model.safetensors", "model/projection.safetensors"]),
}


def start(method: str, out: Path) -> subprocess.Popen:
    args, _ = COMMANDS[method]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "mentalese", *args, f"output_dir={out}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Poll every millisecond until `condition()`; False when the process ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.001)
    return True


def max_abs_diff(a: Path, b: Path, files: list[str]) -> float:
    worst = 0.0
    for name in files:
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys()
        worst = max([worst] + [(x[k].double() - y[k].double()).abs().max().item() for k in x])
    return worst


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory, one_thread):
    """Each method once without interruption (in this process: same code, one thread, same numbers)."""
    from mentalese.commands.cli import main

    runs = {}
    for method, (args, _) in COMMANDS.items():
        out = tmp_path_factory.mktemp(f"{method}_reference")
        assert main([*args, f"output_dir={out}"]) == 0
        runs[method] = (out, json.loads((out / "train_metrics.json").read_text())["train_runtime"])
    return runs


def kill(proc: subprocess.Popen, out: Path, note: str) -> str:
    if proc.poll() is not None:
        return note + " (the run had already finished)"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return note + f" with {sorted(p.name for p in out.glob('checkpoint-*'))} on disk"


def half_written_checkpoint(out: Path, after: int) -> bool:
    try:
        return any(int(p.name.split("-")[1]) > after and any(p.iterdir()) and not (p / "trainer_state.json").exists()
                   for p in out.glob("checkpoint-*"))
    except FileNotFoundError:  # an old checkpoint rotated away while we looked
        return False


@pytest.mark.parametrize("method", list(COMMANDS))
def test_sigkill_then_resume_gives_the_same_weights(method, reference_runs, tmp_path):
    """Kill once at a random time, once inside a checkpoint write, then let the same command finish."""
    reference, train_time = reference_runs[method]
    delay = random.Random(f"{SEED}-{method}").uniform(0.0, 0.8 * train_time)

    proc = start(method, tmp_path)
    wait_for(lambda: checkpoint_is_complete(tmp_path / "checkpoint-2"), proc)
    time.sleep(delay)
    notes = [kill(proc, tmp_path, f"seed {SEED}: SIGKILL {delay:.3f} s after checkpoint-2 was complete")]

    done = last_complete_checkpoint(tmp_path)
    proc = start(method, tmp_path)
    step = int(done.rsplit("-", 1)[1]) if done else 0
    caught = wait_for(lambda: half_written_checkpoint(tmp_path, step), proc)
    notes.append(kill(proc, tmp_path, "then SIGKILL inside a checkpoint write" + ("" if caught else " (missed)")))

    finish(start(method, tmp_path))
    resumed_from = json.loads((tmp_path / "train_metrics.json").read_text())["resumed_from"]
    diff = max_abs_diff(reference, tmp_path, COMMANDS[method][1])
    print(f"{method}: {'; '.join(notes)}; resumed from {resumed_from}: max abs diff {diff}")  # shown with -s
    assert diff <= 1e-6, f"{'; '.join(notes)}; resumed from {resumed_from}: max abs diff {diff}"


def test_last_complete_checkpoint_skips_half_written_directories(tmp_path):
    def checkpoint(step: int, state: str | None) -> None:
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"x")
        if state is not None:
            (path / "trainer_state.json").write_text(state)

    assert last_complete_checkpoint(tmp_path / "missing") is None
    checkpoint(2, json.dumps({"global_step": 2}))
    checkpoint(10, json.dumps({"global_step": 10}))
    checkpoint(12, None)  # killed before trainer_state.json
    checkpoint(14, '{"global_st')  # killed while writing it
    checkpoint(16, json.dumps({"global_step": 6}))  # a copied or renamed directory
    (tmp_path / "checkpoint-18").write_text("not a directory")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
