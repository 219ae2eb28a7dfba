"""`mentalese bench <which> [recipe] [key=value ...]`: speed and memory benchmarks that write JSON.

Never timed tests: each run records its environment (library versions, platform, device) and
reports speed as ratios measured within the same run (ours vs a reference). Every timing goes
through `timer.time_call` (warm-up, repeats, median, CUDA synchronised).

    decode           our greedy decode loop vs `model.generate`            decode.py
    demo             wall time and peak memory of `mentalese demo`          demo.py
    soft             soft-thinking decode step / greedy decode step         soft.py
    codi-decode      CODI vs CoT-SFT: compression, answer latency           codi_decode.py
    codi-train-step  CODI vs CoT-SFT: seconds per optimizer step, memory    codi_train_step.py
    bolt-estep       BoLT E-step: scoring time / sampling time              bolt_estep.py
"""

from __future__ import annotations

from typing import Any

from mentalese.commands import Command
from mentalese.commands.bench.bolt_estep import BoltEStepBenchConfig, bench_bolt_estep
from mentalese.commands.bench.codi_decode import CodiDecodeBenchConfig, bench_codi_decode
from mentalese.commands.bench.codi_train_step import CodiTrainStepBenchConfig, bench_codi_train_step
from mentalese.commands.bench.decode import DecodeBenchConfig, bench_decode
from mentalese.commands.bench.demo import DemoBenchConfig, bench_demo
from mentalese.commands.bench.soft import SoftBenchConfig, bench_soft
from mentalese.errors import MentaleseError

BENCHES: dict[str, Command] = {
    "decode": Command(DecodeBenchConfig, bench_decode, "our greedy decode loop vs model.generate: throughput ratio"),
    "demo": Command(DemoBenchConfig, bench_demo, "wall time and peak memory of `mentalese demo` in a child process"),
    "soft": Command(SoftBenchConfig, bench_soft, "soft thinking: decode-step time / greedy step time -> JSON + PNG"),
    "codi-decode": Command(CodiDecodeBenchConfig, bench_codi_decode,
                           "CODI vs CoT-SFT: token compression and answer latency (speedup)"),
    "codi-train-step": Command(CodiTrainStepBenchConfig, bench_codi_train_step,
                               "CODI vs CoT-SFT: seconds per optimizer step and peak memory"),
    "bolt-estep": Command(BoltEStepBenchConfig, bench_bolt_estep, "BoLT E-step cost: scoring time / sampling time"),
}


def get_bench(which: str) -> Command:
    if which not in BENCHES:
        raise MentaleseError(f"unknown benchmark {which!r}; choose from {', '.join(BENCHES)}")
    return BENCHES[which]


def run_bench(which: str, recipe: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Build the benchmark's config from a recipe (shipped name or YAML path) and overrides, run it;
    returns the result that was written as JSON."""
    from mentalese.config import load_config
    from mentalese.recipes import resolve_recipe

    command = get_bench(which)
    cfg = load_config(command.config, resolve_recipe(recipe) if recipe else None, overrides)
    return command.run(cfg)
