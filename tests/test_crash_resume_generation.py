"""Crash-safe generation: SIGKILL an evaluation / a BoLT E-step at a random point, rerun, compare.

The run is a subprocess; once at least `k` shard files exist (k drawn from a seeded RNG, then a
random extra delay) it is killed with SIGKILL. The rerun must skip exactly the shards on disk
and end with outputs equal to an uninterrupted run: nothing lost, nothing duplicated, same order.
Set MENTALESE_KILL_SEED to try other kill points; the seed is in every failure message.
"""

import json
import logging
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from generation_worker import (
    PYTHON, ROOT, build_bolt_model, build_think_model, eval_overrides, run_estep_here, subprocess_env,
)
from mentalese.config import load_config
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import RUN_SPECIFIC_KEYS, EvalConfig
from mentalese.evaluation.run import run_eval
from mentalese.methods.bolt.estep import read_estep

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

KILL_SEED = int(os.environ.get("MENTALESE_KILL_SEED", "20261121"))
SAMPLED = ["decode.do_sample=true", "num_samples=2", "shard_size=1"]  # 12 shards, seeds per shard matter
ESTEP = {"num_samples": 3, "max_thought_tokens": 40, "shard_size": 2, "batch_size": 6}  # 15 chunks, 8 shards


def kill_after_shards(cmd: list[str], shard_glob: Path, total: int, seed: int) -> list[str]:
    """Start `cmd`, SIGKILL it at a seeded random point after >= 1 shard file; returns the shard files left."""
    rng = random.Random(seed)
    wanted, delay = rng.randint(1, total // 2), rng.uniform(0.0, 0.05)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(shard_glob.parent.glob(shard_glob.name))) < wanted:
        assert proc.poll() is None, f"seed {seed}: the run ended before {wanted} shards:\n{proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"seed {seed}: no {wanted} shards after 120 s"
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"seed {seed}: the run finished before the kill (wanted {wanted})"
    left = sorted(p.name for p in shard_glob.parent.glob(shard_glob.name))
    assert wanted <= len(left) < total, f"seed {seed}: {len(left)} of {total} shards on disk after the kill"
    return left


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    return build_think_model(root / "think"), build_bolt_model(root)


def test_killed_evaluation_resumes_to_the_uninterrupted_result(models, tmp_path, caplog):
    think, _ = models
    overrides = eval_overrides(think, tmp_path / "killed", *SAMPLED)
    cmd = [PYTHON, "-m", "mentalese", "eval", *overrides]
    left = kill_after_shards(cmd, tmp_path / "killed" / "parts" / "part-*.jsonl", 12, KILL_SEED)
    assert not (tmp_path / "killed" / "predictions.jsonl").exists()
    with pytest.raises(MentaleseError, match="partial evaluation with other settings"):  # fingerprint differs
        run_eval(load_config(EvalConfig, None, [*overrides, "decode.seed=1"]), progress=False)

    with caplog.at_level(logging.INFO, logger="mentalese.evaluation.harness"):
        resumed = run_eval(load_config(EvalConfig, None, overrides), progress=False)
    assert f"({len(left)} of 12 shards already done)" in caplog.text, f"seed {KILL_SEED}"
    full = run_eval(load_config(EvalConfig, None, eval_overrides(think, tmp_path / "full", *SAMPLED)), progress=False)

    killed, uninterrupted = tmp_path / "killed", tmp_path / "full"
    assert (killed / "predictions.jsonl").read_bytes() == (uninterrupted / "predictions.jsonl").read_bytes(), \
        f"seed {KILL_SEED}"
    rows = [json.loads(line) for line in (killed / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12 and all(len(r["samples"]) == 2 for r in rows)
    same = {k: v for k, v in resumed.items() if k not in RUN_SPECIFIC_KEYS}
    assert same == {k: v for k, v in full.items() if k not in RUN_SPECIFIC_KEYS}
    assert json.loads((killed / "metrics.json").read_text()) == resumed
    assert not (killed / "parts").exists() and not list(killed.rglob("*.tmp"))


def test_killed_estep_resumes_to_the_uninterrupted_result(models, tmp_path):
    _, bolt = models
    cmd = [PYTHON, str(ROOT / "tests" / "generation_worker.py"),
           json.dumps([{"estep": [str(bolt), str(tmp_path / "killed"), ESTEP]}])]
    left = kill_after_shards(cmd, tmp_path / "killed" / "shard-*.stats.json", 8, KILL_SEED + 1)
    done = {int(name[len("shard-"):][:5]) for name in left}

    computed = []
    resumed = run_estep_here(bolt, tmp_path / "killed", ESTEP, after_shard=computed.append)
    assert sorted(computed) == sorted(set(range(8)) - done), f"seed {KILL_SEED + 1}: recomputed {computed}, had {done}"
    full = run_estep_here(bolt, tmp_path / "full", ESTEP)

    for s in range(8):
        name = f"shard-{s:05d}.jsonl"
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    a, b = read_estep(tmp_path / "full"), read_estep(tmp_path / "killed")
    assert [r["chunk_id"] for r in b] == [r["chunk_id"] for r in a] and len({r["chunk_id"] for r in b}) == 15
    assert sum(r["thought"] is not None for r in b) >= 3  # proposals closed and were scored and selected
    keep = [k for k in full["summary"] if "seconds" not in k and "over" not in k]
    assert {k: resumed["summary"][k] for k in keep} == pytest.approx({k: full["summary"][k] for k in keep}, nan_ok=True)
    assert not list((tmp_path / "killed").glob(".*.tmp"))
