"""`mentalese demo`: the front door. Trains tiny models on the chain task and compares them.

Each row of the table is a `DemoRow`: a name and a function that trains (or reuses) a model in
its own folder under the run directory and evaluates it on the same test problems. Rows whose
model is already there are not retrained, so a rerun after a crash loses no finished work.
Later methods (CODI, soft thinking, BoLT) add rows with `register_row`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mentalese.analysis.plots import plot_accuracy_and_tokens, plot_loss_curves, read_loss_curve
from mentalese.config import load_config, save_config
from mentalese.decoding.loop import DecodeConfig
from mentalese.determinism import make_deterministic
from mentalese.errors import MentaleseError
from mentalese.evaluation.harness import evaluate
from mentalese.atomic_files import write_text_atomic
from mentalese.methods.sft import SFTConfig, train_sft
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.recipes import resolve_recipe
from mentalese.tasks.registry import get_benchmark, load_benchmark

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    output_dir: str = field(default="runs/demo", metadata={"help": "run directory (report.md lands here)"})
    rows: list[str] = field(default_factory=lambda: ["cot-sft", "nocot-sft", "bolt", "soft-thinking", "codi"], metadata={"help": "table rows"})
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
        unknown = [r for r in self.rows if r not in DEMO_ROWS]
        if unknown:
            raise MentaleseError(f"unknown demo rows {unknown}; known: {sorted(DEMO_ROWS)}")

    def task_options(self, split: str) -> dict[str, Any]:
        n = self.train_examples if split == "train" else self.test_examples
        return {"num_steps": self.num_steps, "modulus": self.modulus, "num_examples": n, "seed": self.seed}


@dataclass
class RowResult:
    name: str
    metrics: dict[str, Any]
    eval_dir: Path  # holds predictions.jsonl
    train_seconds: float | None = None
    loss_curve: tuple[list[int], list[float]] = ([], [])
    notes: str = ""  # short text for the table's notes column (e.g. "pass@4 62%")
    report_section: str = ""  # extra markdown for the report (plots must be saved under the run dir)


@dataclass
class DemoRow:
    """One entry of `rows`: trains/reuses its model(s) in its own folder and returns table rows."""

    name: str
    description: str
    run: Callable[[DemoConfig, Path], list[RowResult]]


DEMO_ROWS: dict[str, DemoRow] = {}


def register_row(row: DemoRow) -> DemoRow:
    DEMO_ROWS[row.name] = row
    return row


def test_examples(cfg: DemoConfig):
    return load_benchmark("chain", "test", **cfg.task_options("test"))


def eval_decode_config() -> DecodeConfig:
    return DecodeConfig(max_new_tokens=64, batch_size=128)


def sft_row(cfg: DemoConfig, run_dir: Path, cot: bool) -> list[RowResult]:
    recipe = resolve_recipe("sft/chain_cot" if cot else "sft/chain_nocot")
    sft = load_config(SFTConfig, recipe, [
        f"output_dir={run_dir}", f"model_name_or_path=tiny-{cfg.arch}", f"max_steps={cfg.train_steps}",
        f"seed={cfg.seed}", f"task_options={json.dumps(cfg.task_options('train'))}",
    ])
    model_dir = run_dir / "model"
    train_seconds = None
    if not (model_dir / "config.json").exists():
        start = time.perf_counter()
        train_sft(sft)
        train_seconds = time.perf_counter() - start
        write_text_atomic(run_dir / "train_seconds.txt", f"{train_seconds:.2f}\n")
    elif (run_dir / "train_seconds.txt").exists():
        train_seconds = float((run_dir / "train_seconds.txt").read_text())
    model, tokenizer = load_model_and_tokenizer(model_dir, dtype="float32", device="auto")
    metrics = evaluate(model, tokenizer, test_examples(cfg), get_benchmark("chain"), eval_decode_config(),
                       output_dir=run_dir / "eval")
    return [RowResult("CoT-SFT" if cot else "No-CoT-SFT", metrics, run_dir / "eval", train_seconds,
                      read_loss_curve(run_dir))]


register_row(DemoRow("cot-sft", "fine-tuned to write the steps, then the answer", lambda c, d: sft_row(c, d, True)))
register_row(DemoRow("nocot-sft", "fine-tuned to write the answer directly", lambda c, d: sft_row(c, d, False)))


def majority_baseline(cfg: DemoConfig) -> float:
    """Accuracy of always answering the most common training answer: the floor any model must beat."""
    train = load_benchmark("chain", "train", **cfg.task_options("train"))
    top = Counter(ex.answer for ex in train).most_common(1)[0][0]
    test = test_examples(cfg)
    return sum(ex.answer == top for ex in test) / len(test)


def run_demo(cfg: DemoConfig) -> Path:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "demo_config.yaml")
    make_deterministic(cfg.threads)
    start = time.perf_counter()
    results = []
    for name in cfg.rows:
        print(f"[demo] {name}: {DEMO_ROWS[name].description}", flush=True)
        results.extend(DEMO_ROWS[name].run(cfg, out / name))
    baseline = majority_baseline(cfg)
    wall = time.perf_counter() - start
    table = format_table(results, baseline)
    print("\n" + table + "\n", flush=True)
    write_report(cfg, out, results, baseline, table, wall)
    return out / "report.md"


def format_table(results: list[RowResult], baseline: float) -> str:
    lines = [
        "| method | test accuracy (strict) | flexible | generated tokens | latency / problem (ms) | train time (s) | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        m = r.metrics
        train = f"{r.train_seconds:.0f}" if r.train_seconds is not None else "-"
        lines.append(f"| {r.name} | {100 * m['accuracy']:.1f}% | {100 * m['accuracy_flexible']:.1f}% | "
                     f"{m['mean_generated_tokens']:.1f} | {1000 * m['latency_per_example_s']:.2f} | {train} | {r.notes} |")
    lines.append(f"| majority answer (reference) | {100 * baseline:.1f}% | - | - | - | - | always the most common training answer |")
    return "\n".join(lines)


def write_report(cfg: DemoConfig, out: Path, results: list[RowResult], baseline: float, table: str,
                 wall: float) -> None:
    names = [r.name for r in results]
    plot_accuracy_and_tokens(names, [r.metrics["accuracy"] for r in results],
                             [r.metrics["mean_generated_tokens"] for r in results], out / "accuracy_tokens.png",
                             "chain task, test split")
    curves = {r.name: r.loss_curve for r in results if r.loss_curve[0]}
    if curves:
        plot_loss_curves(curves, out / "loss_curves.png", "training loss")
    example = test_examples(cfg)[0]
    samples = []
    for r in results:
        with (r.eval_dir / "predictions.jsonl").open() as f:
            pred = json.loads(f.readline())
        samples.append(f"**{r.name}**:\n```\n{pred['samples'][0]['text']}\n```")
    report = f"""# mentalese demo: reasoning on the chain task

Each problem is a chain of {cfg.num_steps} operations mod {cfg.modulus}, applied left to right.
Every model is a random tiny {cfg.arch} (character tokenizer) trained from scratch on
{cfg.train_examples} problems for {cfg.train_steps} steps, then decoded greedily on {cfg.test_examples}
held-out test problems (the splits are disjoint by construction).

{table}

Strict accuracy reads the number after "The answer is:"; flexible takes the last number in the
output. Latency is batched wall time per problem (batch 128) on this machine.

![accuracy and tokens](accuracy_tokens.png)
{"![training loss](loss_curves.png)" if curves else ""}

{chr(10).join(r.report_section for r in results if r.report_section)}

## One test problem

`{example.question}` (answer {example.answer}; steps: {' '.join(example.cot_steps)})

{chr(10).join(samples)}

## Reproduce

```
mentalese demo output_dir={cfg.output_dir}{' quick=true' if cfg.quick else ''}
```
Total wall time: {wall:.0f} s. Per-example outputs: `<row>/eval/predictions.jsonl`; metrics: `results.json`.
"""
    write_text_atomic(out / "report.md", report)
    write_text_atomic(out / "results.json", json.dumps({
        "rows": {r.name: {**r.metrics, "train_seconds": r.train_seconds} for r in results},
        "majority_baseline_accuracy": baseline, "wall_time_s": wall}, indent=2))


import mentalese.methods.soft_thinking_demo  # noqa: E402,F401  (registers the soft-thinking rows)
import mentalese.methods.bolt.demo_rows  # noqa: E402,F401  (registers the BoLT rows)
import mentalese.methods.codi.demo_rows  # noqa: E402,F401  (registers the CODI rows)
from mentalese.atomic_files import write_text_atomic
