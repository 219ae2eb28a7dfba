"""`mentalese demo`: the front door. Trains tiny models on the chain task and compares them.

Each row of `rows.ROWS` trains (or reuses) a model in its own folder under the run directory and
evaluates it on the same test problems. Rows whose model is already there are not retrained, so a
rerun after a crash loses no finished work. The terminal shows a transient progress bar per
training and one result line per table line; training logs go to each run's train_log.jsonl
(`-v` prints them too).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mentalese.commands.demo.report import format_table, write_report
from mentalese.commands.demo.rows import ROWS
from mentalese.commands.demo.shared import RowResult, majority_baseline
from mentalese.config import save_config
from mentalese.console import verbose
from mentalese.determinism import make_deterministic
from mentalese.errors import MentaleseError


@dataclass
class DemoConfig:
    output_dir: str = field(default="runs/demo", metadata={"help": "run directory (report.md lands here)"})
    rows: list[str] = field(default_factory=lambda: ["cot-sft", "nocot-sft", "bolt", "soft-thinking", "codi", "icot", "coconut"], metadata={"help": "table rows"})
    arch: str = field(default="gpt2", metadata={"help": "tiny architecture: gpt2, llama, qwen2, qwen3"})
    num_steps: int = field(default=4, metadata={"help": "operations per chain problem"})
    modulus: int = field(default=10, metadata={"help": "number range of the chain task"})
    train_examples: int = field(default=5000, metadata={"help": "training problems"})
    test_examples: int = field(default=500, metadata={"help": "test problems"})
    train_steps: int = field(default=800, metadata={"help": "optimizer steps per trained row"})
    seed: int = field(default=0, metadata={"help": "seed for data, init and training"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads; fixed because the thread count changes "
                                                      "the numbers (determinism.py)"})
    quick: bool = field(default=False, metadata={"help": "small setting for tests (~1 minute)"})
    codi_train_steps: int | None = field(default=None, metadata={"help": "CODI optimizer steps (None: 800, quick 150)"})
    codi_num_latent: int = field(default=4, metadata={"help": "CODI continuous thoughts (one per chain step)"})
    codi_from_cot_sft: bool = field(default=True, metadata={"help": "start CODI from the cot-sft row's model"})
    codi_ablations: bool = field(default=False, metadata={"help": "add CODI w/o distillation and w/o projection"})

    def __post_init__(self) -> None:
        if self.quick:
            self.train_examples, self.test_examples, self.train_steps = 2000, 200, 500
        for name in ("train_examples", "test_examples", "train_steps"):
            if getattr(self, name) < 1:
                raise MentaleseError(f"{name} must be >= 1, got {getattr(self, name)}")
        unknown = [r for r in self.rows if r not in ROWS]
        if unknown:
            raise MentaleseError(f"unknown demo rows {unknown}; known: {sorted(ROWS)}")

    def task_options(self, split: str) -> dict[str, Any]:
        n = self.train_examples if split == "train" else self.test_examples
        return {"num_steps": self.num_steps, "modulus": self.modulus, "num_examples": n, "seed": self.seed}


def run_demo(cfg: DemoConfig) -> Path:
    """Run (or reuse) every row of `cfg.rows` in that order; write report.md, table.md, results.json."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "demo_config.yaml")
    make_deterministic(cfg.threads)
    start = time.perf_counter()
    results: list[RowResult] = []
    print(f"[demo] {len(cfg.rows)} row{'' if len(cfg.rows) == 1 else 's'} on the chain task{' (quick)' if cfg.quick else ''} in {out}; "
          f"training logs: <row>/**/train_log.jsonl{'' if verbose() else ' (-v prints them)'}", flush=True)
    for name in cfg.rows:
        row_start = time.perf_counter()
        with quiet_libraries():
            lines = ROWS[name].run(cfg, out / name)
        seconds = time.perf_counter() - row_start
        for i, r in enumerate(lines):  # the row's name and time on its first line
            r.family = ROWS[name].family
            print(result_line(name if i == 0 else "", r, seconds if i == 0 else None), flush=True)
        results.extend(lines)
    baseline = majority_baseline(cfg)
    print(f"{'':<14} {'majority answer (reference)':<34} accuracy {100 * baseline:5.1f}%", flush=True)
    wall = time.perf_counter() - start
    write_report(cfg, out, results, baseline, wall)
    print(f"[demo] table: {out / 'table.md'}", flush=True)
    return out / "report.md"


def result_line(row: str, r: RowResult, seconds: float | None) -> str:
    m = r.metrics
    line = f"{row:<14} {r.name:<34} accuracy {100 * m['accuracy']:5.1f}%  tokens {m['mean_generated_tokens']:5.1f}"
    return line + (f"  ({seconds:.0f} s)" if seconds is not None else "")


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Unless verbose: the library's INFO lines (E-step shards, resumes), transformers' warnings and its
    own progress bars (loading weights, writing shards) stay off the terminal; errors and warnings show."""
    if verbose():
        yield
        return
    from transformers.utils import logging as hf_logging

    ours = logging.getLogger("mentalese")
    level, hf_level, hf_bars = ours.level, hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    ours.setLevel(logging.WARNING)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        ours.setLevel(level)
        hf_logging.set_verbosity(hf_level)
        if hf_bars:
            hf_logging.enable_progress_bar()


__all__ = ["DemoConfig", "RowResult", "format_table", "run_demo"]
