"""Data-parallel generation: two CPU processes (torchrun, gloo) give exactly what one gives, in order.

Evaluation (greedy; soft thinking with Gumbel-Softmax noise, 3 samples per example) and the BoLT
E-step run once in this process and once split over two processes; the predictions / E-step
shard files must be byte-identical, and each of the two processes must have done part of the work.
"""

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from generation_worker import (
    ROOT, build_bolt_model, build_think_model, eval_overrides, run_checked, run_estep_here, torchrun,
)
from mentalese.config import load_config
from mentalese.evaluation.harness import RUN_SPECIFIC_KEYS, EvalConfig, evaluate
from mentalese.evaluation.run import run_eval
from mentalese.methods.bolt.estep import read_estep

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

SOFT = ["soft_thinking.mode=gumbel", 'soft_thinking.think_open=""', "num_samples=3"]
ESTEP = {"num_samples": 3, "max_thought_tokens": 40, "shard_size": 3, "batch_size": 4}  # 15 chunks, 5 shards


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    think, bolt = build_think_model(root / "think"), build_bolt_model(root)
    soft = run_checked(torchrun(2, "-m", "mentalese", "eval", *eval_overrides(think, root / "soft2", *SOFT)))
    jobs = [{"eval": eval_overrides(think, root / "greedy2")}, {"estep": [str(bolt), str(root / "estep2"), ESTEP]}]
    worker = run_checked(torchrun(2, str(ROOT / "tests" / "generation_worker.py"), json.dumps(jobs)))
    return SimpleNamespace(root=root, think=think, bolt=bolt, logs=soft.stderr + worker.stderr)


def without_run_specific(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in RUN_SPECIFIC_KEYS}


@pytest.mark.parametrize("name, extra", [("greedy", []), ("soft", SOFT)])
def test_eval_in_two_processes_equals_one(runs, name, extra):
    cfg = load_config(EvalConfig, None, eval_overrides(runs.think, runs.root / f"{name}1", *extra))
    one = run_eval(cfg, progress=False)
    two_dir = runs.root / f"{name}2"
    two = json.loads((two_dir / "metrics.json").read_text())
    assert (two_dir / "predictions.jsonl").read_bytes() == (runs.root / f"{name}1" / "predictions.jsonl").read_bytes()
    assert without_run_specific(two) == without_run_specific(one)
    assert (one["num_processes"], two["num_processes"], two["num_shards"]) == (1, 2, 6)
    rows = [json.loads(line) for line in (two_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    assert not (two_dir / "parts").exists() and not list(two_dir.glob(".*.tmp"))
    texts = [s["text"] for r in rows for s in r["samples"]]
    assert len(set(texts)) > 1  # the outputs differ between examples: the equality is not vacuous
    if name == "soft":  # samples of one example differ: the noise is live, and seeded by shard
        assert all(len(r["samples"]) == 3 for r in rows)
        assert sum(len({s["text"] for s in r["samples"]}) > 1 for r in rows) >= 6
        assert all("thinking_steps" in s["info"] for r in rows for s in r["samples"])
    # both processes took their round-robin half of the 6 shards (the soft and the greedy run)
    assert runs.logs.count("process 0/2 decodes shards [0, 2, 4] (0 of 6 shards already done)") == 2
    assert runs.logs.count("process 1/2 decodes shards [1, 3, 5] (0 of 6 shards already done)") == 2


def test_eval_ids_follow_the_benchmark_order(runs):
    from mentalese.tasks.registry import load_benchmark

    examples = load_benchmark("chain", "test", num_steps=2, num_examples=12)
    rows = [json.loads(line) for line in (runs.root / "greedy2" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [e.id for e in examples] and len({e.id for e in examples}) == 12


def test_estep_in_two_processes_equals_one(runs):
    one_dir, two_dir = runs.root / "estep1", runs.root / "estep2"
    m1 = run_estep_here(runs.bolt, one_dir, ESTEP, processes=None)
    m2 = json.loads((two_dir / "manifest.json").read_text())
    assert m2["num_shards"] == 5 and sorted(m2["shards"]) == ["0", "1", "2", "3", "4"]
    for s in range(5):
        name = f"shard-{s:05d}.jsonl"
        assert (two_dir / name).read_bytes() == (one_dir / name).read_bytes(), name
    a, b = read_estep(one_dir), read_estep(two_dir)
    assert [r["chunk_id"] for r in a] == [r["chunk_id"] for r in b] and len({r["chunk_id"] for r in b}) == 15
    assert sum(r["thought"] is not None for r in b) >= 3 and len({p for r in b for p in r["proposals"]}) > 5
    no_seconds = {k: v for k, v in m1["summary"].items() if "seconds" not in k and "over" not in k}
    from_file = {k: math.nan if m2["summary"][k] is None else m2["summary"][k] for k in no_seconds}  # JSON: nan -> null
    assert from_file == pytest.approx(no_seconds, nan_ok=True)
    assert "E-step: process 0/2 computes shards [0, 2, 4] (0 of 5 already done)" in runs.logs
    assert "E-step: process 1/2 computes shards [1, 3] (0 of 5 already done)" in runs.logs


def test_one_shard_decodes_exactly_as_unsharded(runs):
    """A run that fits in one shard is the plain batched decode of every prompt with the run's seed."""
    from mentalese.decoding.loop import DecodeConfig, decode
    from mentalese.models.loading import load_model_and_tokenizer
    from mentalese.tasks.registry import get_benchmark, load_benchmark, render_prompt

    model, tok = load_model_and_tokenizer(runs.think, dtype="float32", device="cpu")
    examples, spec = load_benchmark("chain", "test", num_steps=2, num_examples=6), get_benchmark("chain")
    cfg = DecodeConfig(max_new_tokens=16, batch_size=4, do_sample=True, seed=3)
    plain = decode(model, tok, [render_prompt(spec.prompt, e.question) for e in examples for _ in range(2)], cfg)
    sharded = evaluate(model, tok, examples, spec, cfg, num_samples=2, shard_size=6, output_dir=runs.root / "one")
    rows = [json.loads(line) for line in (runs.root / "one" / "predictions.jsonl").read_text().splitlines()]
    assert [s["text"] for r in rows for s in r["samples"]] == [r.text for r in plain]
    assert sharded["num_shards"] == 1
    # in shards of 2 the sampling batches, hence the samples, change (documented): the seed is per shard
    evaluate(model, tok, examples, spec, cfg, num_samples=2, shard_size=2, output_dir=runs.root / "three")
    rows3 = [json.loads(line) for line in (runs.root / "three" / "predictions.jsonl").read_text().splitlines()]
    assert [s["text"] for r in rows3 for s in r["samples"]] != [r.text for r in plain]


def test_round_robin_shares_cover_every_shard_once():
    from mentalese.sharding import Processes, num_shards, shard_seed

    todo = [0, 2, 3, 5, 6, 7, 9]  # unfinished shards after a resume
    for world in (1, 2, 3, 8):
        shares = [Processes(rank, world).share(todo) for rank in range(world)]
        assert sorted(s for share in shares for s in share) == todo
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert [num_shards(n, 4) for n in (1, 4, 5, 8, 9)] == [1, 1, 2, 2, 3]
    assert shard_seed(7, 0) == 7 and len({shard_seed(7, s) for s in range(100)}) == 100
