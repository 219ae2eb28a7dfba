"""`mentalese bench soft`: seconds per decode step of soft thinking / greedy, same loop and model.

Per-step time = (time of a long run - time of a short run) / (their difference in loop steps), so
the prefill cancels. Each run is timed by the one timer (warm-up, median of `repeats`) on process
CPU time on CPU (robust to other jobs sharing the cores; run single-threaded) and on synchronised
wall time on CUDA. Writes soft_bench.json and soft_bench.png into `output_dir`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mentalese.analysis.soft_plots import plot_bars
from mentalese.commands.bench.record import environment, write_result
from mentalese.commands.bench.timer import time_call
from mentalese.config import config_to_dict
from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.decoding.soft_thinking import SoftThinkingConfig, SoftThinkingStrategy
from mentalese.decoding.strategies import DiscreteStrategy
from mentalese.errors import MentaleseError
from mentalese.models.loading import load_model_and_tokenizer, resolve_device
from mentalese.models.tiny import build_tiny_model, char_tokenizer, tiny_size_overrides


@dataclass
class SoftBenchConfig:
    arch: str = field(default="gpt2", metadata={"help": "random model architecture"})
    width: int = field(default=128, metadata={"help": "hidden size"})
    layers: int = field(default=2, metadata={"help": "layers"})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32], metadata={"help": "batch sizes"})
    short_steps: int = field(default=16, metadata={"help": "steps of the short run"})
    long_steps: int = field(default=80, metadata={"help": "steps of the long run (per-step = difference)"})
    repeats: int = field(default=5, metadata={"help": "timed repeats after one warm-up; the median is kept"})
    modes: list[str] = field(default_factory=lambda: ["vanilla", "dirichlet", "gumbel"],
                             metadata={"help": "soft modes"})
    device: str = field(default="auto", metadata={"help": "cpu / cuda / auto"})
    output_dir: str = field(default="runs/soft_bench", metadata={"help": "where soft_bench.json and .png go"})

    def __post_init__(self) -> None:
        if not 1 <= self.short_steps < self.long_steps:
            raise MentaleseError("need 1 <= short_steps < long_steps")


def bench_soft(cfg: SoftBenchConfig) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    path = Path(cfg.output_dir) / "model"
    sizes = tiny_size_overrides(cfg.arch, cfg.width, cfg.layers, heads=max(1, cfg.width // 64))
    if cfg.arch == "gpt2":
        sizes["n_positions"] = 1024
    build_tiny_model(cfg.arch, char_tokenizer(extra_tokens=["<think>", "</think>"]), path, **sizes)
    model, tok = load_model_and_tokenizer(path, dtype="float32", device=str(device))
    # a random model may write eos at any step; forbid it so every run lasts exactly its steps
    no_eos = torch.tensor([tok.eos_token_id], device=device)
    model.get_output_embeddings().register_forward_hook(lambda module, args, out: out.index_fill(-1, no_eos, -1e4))
    soft = {m: SoftThinkingConfig(mode=m, cold_stop=False, think_open="") for m in cfg.modes}
    rows = []
    for bs in cfg.batch_sizes:
        prompts = [f"{i}+{i % 7}*3-{i % 5}\n" for i in range(bs)]

        def per_step(strategy_factory) -> float:
            times, steps_taken = {}, {}
            for steps in (cfg.short_steps, cfg.long_steps):
                dc = DecodeConfig(max_new_tokens=steps, batch_size=bs)
                timing = time_call(lambda: decode(model, tok, prompts, dc, strategy_factory()), device,
                                   cfg.repeats, clock=clock)
                times[steps] = timing.median_s
                # rows may stop early on eos: the loop runs as long as its longest row
                steps_taken[steps] = max(r.num_steps for r in timing.result)
            if steps_taken[cfg.long_steps] <= steps_taken[cfg.short_steps]:
                raise MentaleseError("rows stopped before short_steps; lower short_steps")
            return (times[cfg.long_steps] - times[cfg.short_steps]) / (
                steps_taken[cfg.long_steps] - steps_taken[cfg.short_steps])

        greedy_s = per_step(lambda: DiscreteStrategy())
        row = {"batch_size": bs, "greedy_step_ms": 1000 * greedy_s}
        for m, sc in soft.items():
            s = per_step(lambda: SoftThinkingStrategy(sc, tok))
            row[f"{m}_step_ms"], row[f"{m}_over_greedy"] = 1000 * s, s / greedy_s
        rows.append(row)
    result = {"benchmark": "soft_step_overhead", "goal": "vanilla_over_greedy <= 1.05",
              "clock": "process CPU time" if device.type == "cpu" else "wall time (cuda synchronised)",
              "environment": environment(device), "model_parameters": sum(p.numel() for p in model.parameters()),
              "config": config_to_dict(cfg), "results": rows}
    plot_bars({f"{m} b{r['batch_size']}": r[f"{m}_over_greedy"] for r in rows for m in cfg.modes},
              "step time / greedy step time", Path(cfg.output_dir) / "soft_bench.png", "soft-thinking step overhead")
    return write_result(Path(cfg.output_dir) / "soft_bench.json", result)
