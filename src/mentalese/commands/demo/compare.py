"""`mentalese demo compare`: the CODI paper's comparison on the built-in chain task, 3 seeds per row.

    mentalese demo compare                          # every row, variants chain + shuffled, seeds 0 1 2
    mentalese demo compare "rows=[cot-sft,codi]" "seeds=[0]" "variants=[chain]"

Layout: `<output_dir>/<variant>/seed<k>/<row>/` holds the row's training run, `eval/` (predictions and
metrics), and `result.json`, written last. A row whose result.json exists is not redone, so a killed run
loses at most the row in flight and a rerun of a finished comparison changes nothing. Seeds may run in
separate processes on the same output_dir (`"seeds=[1]"`): every row folder belongs to one seed. The
report (report.md, table.md, results.json) is written from the result files of the requested rows.

Variants: `chain` (the demo's task: 4 operations mod 10) and `shuffled` (the same chains with their
premises named and listed in random order, so a fixed position pattern cannot be a shortcut).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentalese.atomic_files import write_text_atomic
from mentalese.commands.demo.compare_rows import DEFAULT_ROWS, ROWS, SHUFFLED_ROWS, STARTS, CompareRow
from mentalese.commands.demo.run import quiet_libraries
from mentalese.config import save_config
from mentalese.determinism import make_deterministic
from mentalese.errors import MentaleseError

VARIANTS = {"chain": {}, "shuffled": {"shuffle_premises": True}}


@dataclass
class CompareConfig:
    output_dir: str = field(default="runs/compare", metadata={"help": "run directory (report.md lands here)"})
    rows: list[str] = field(default_factory=lambda: list(DEFAULT_ROWS), metadata={"help": "rows of the chain variant"})
    shuffled_rows: list[str] = field(default_factory=lambda: list(SHUFFLED_ROWS),
                                     metadata={"help": "rows of the shuffled-premises variant"})
    variants: list[str] = field(default_factory=lambda: ["chain", "shuffled"], metadata={"help": "chain, shuffled"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "one full run per seed"})
    num_steps: int = field(default=4, metadata={"help": "operations per chain problem"})
    train_examples: int = field(default=5000, metadata={"help": "training problems"})
    test_examples: int = field(default=500, metadata={"help": "test problems"})
    train_steps: int | None = field(default=None, metadata={
        "help": "optimizer steps of every row; None = each recipe's own (800 for SFT and CODI)"})
    batch_1_problems: int = field(default=30, metadata={"help": "problems timed at batch size 1"})
    thought_examples: int = field(default=200, metadata={"help": "test problems for the do-the-thoughts-matter drop"})
    threads: int = field(default=1, metadata={
        "help": "torch CPU threads (the thread count changes the numbers; docs/comparison.md used 1)"})

    def __post_init__(self) -> None:
        for name, chosen in (("rows", self.rows), ("shuffled_rows", self.shuffled_rows)):
            unknown = [r for r in chosen if r not in ROWS]
            if unknown:
                raise MentaleseError(f"unknown {name} {unknown}; known: {', '.join(ROWS)}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise MentaleseError(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
        if not self.seeds:
            raise MentaleseError("seeds must name at least one seed")
        for name in ("train_examples", "test_examples", "batch_1_problems", "thought_examples"):
            if getattr(self, name) < 1:
                raise MentaleseError(f"{name} must be >= 1, got {getattr(self, name)}")

    def rows_of(self, variant: str) -> list[str]:
        return self.rows if variant == "chain" else [r for r in self.shuffled_rows]

    def task_options(self, variant: str, split: str, seed: int, num_steps: Any = None) -> dict[str, Any]:
        n = self.train_examples if split == "train" else self.test_examples
        return {"num_steps": num_steps or self.num_steps, "modulus": 10, "num_examples": n, "seed": seed,
                **VARIANTS[variant]}


def run_compare(cfg: CompareConfig) -> Path:
    from mentalese.commands.demo.compare_report import write_compare_report

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / f"compare_config.seeds-{'-'.join(map(str, cfg.seeds))}.yaml")
    make_deterministic(cfg.threads)
    todo = [(v, s, r) for v in cfg.variants for s in cfg.seeds for r in cfg.rows_of(v)]
    print(f"[compare] {len(todo)} runs ({len(cfg.variants)} variants x {len(cfg.seeds)} seeds) in {out}", flush=True)
    results = []
    for variant, seed, name in todo:
        start = time.perf_counter()
        with quiet_libraries():
            result = row_result(cfg, out / variant / f"seed{seed}", name, variant, seed)
        results.append(result)
        print(f"{variant:<9} seed {seed}  {ROWS[name].label:<34} accuracy {100 * result['accuracy']:5.1f}%  "
              f"tokens {result['mean_generated_tokens']:5.1f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    report = write_compare_report(cfg, out, results)
    print(f"[compare] table: {out / 'table.md'}", flush=True)
    return report


def train_settings(cfg: CompareConfig, row: CompareRow, variant: str, seed: int) -> list[str]:
    """The key=value overrides that make a row (its output_dir and start model aside)."""
    settings = [f"seed={seed}", "disable_tqdm=false", *row.overrides,
                f"task_options={json.dumps(cfg.task_options(variant, 'train', seed, row.extra.get('num_steps')))}"]
    if cfg.train_steps is not None:
        settings.append(f"max_steps={cfg.train_steps}")
    return settings


def train_row(cfg: CompareConfig, seed_dir: Path, row: CompareRow, name: str, variant: str, seed: int) -> tuple[Path, float]:
    """Train (or reuse) a row's model; returns its directory and the training seconds (of this row alone)."""
    from mentalese.api import train

    run_dir = seed_dir / name
    seconds_file = run_dir / "train_seconds.txt"
    settings = train_settings(cfg, row, variant, seed)
    check_spec(run_dir / "row_spec.json", {"recipe": row.recipe, "settings": settings, "start": row.start})
    overrides = [f"output_dir={run_dir}", *settings]
    if row.start is not None:
        start_dir, _ = train_row(cfg, seed_dir, STARTS[row.start], row.start, variant, seed)
        overrides.append(f"model_name_or_path={start_dir.resolve()}")
    done = run_dir / "model_dir.txt"
    if not done.exists():
        began = time.perf_counter()
        model_dir = train(row.recipe, overrides)
        write_text_atomic(seconds_file, f"{time.perf_counter() - began:.2f}\n")
        write_text_atomic(done, f"{model_dir}\n")
    return Path(done.read_text().strip()), float(seconds_file.read_text())


def check_spec(path: Path, spec: dict[str, Any]) -> None:
    """A cached row is reused only for the settings that made it: a changed row or setting must not be
    reported with the old numbers. The first run writes the spec; a row cached before specs existed adopts it."""
    spec = json.loads(json.dumps(spec))
    if path.exists():
        old = json.loads(path.read_text())
        if old != spec:
            changed = sorted(k for k in {*old, *spec} if old.get(k) != spec.get(k))
            raise MentaleseError(f"{path.parent} was made with other settings ({', '.join(changed)}: "
                                 f"{[old.get(k) for k in changed]} -> {[spec.get(k) for k in changed]}); "
                                 "delete that folder or use another output_dir")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(spec, indent=2) + "\n")


def row_result(cfg: CompareConfig, seed_dir: Path, name: str, variant: str, seed: int) -> dict[str, Any]:
    """Train, evaluate and (for latent rows) intervene on the thoughts; cached in result.json."""
    from mentalese.api import load
    from mentalese.commands.demo.shared import eval_decode_config
    from mentalese.decoding.loop import DecodeConfig
    from mentalese.evaluation.harness import evaluate
    from mentalese.tasks.registry import get_benchmark, load_benchmark

    row = ROWS[name]
    result_file = seed_dir / name / "result.json"
    check_spec(seed_dir / name / "row_spec.json",
               {"recipe": row.recipe, "settings": train_settings(cfg, row, variant, seed), "start": row.start})
    check_spec(seed_dir / name / "eval_spec.json", {k: getattr(cfg, k) for k in (
        "num_steps", "test_examples", "batch_1_problems", "thought_examples", "threads")})
    if result_file.exists():
        return json.loads(result_file.read_text())
    model_dir, train_seconds = train_row(cfg, seed_dir, row, name, variant, seed)
    loaded = load(model_dir, dtype="float32")
    spec = get_benchmark("chain")
    examples = load_benchmark("chain", "test", **cfg.task_options(variant, "test", seed))
    prompt = loaded.prompt_template(spec.prompt)
    metrics = evaluate(loaded.model, loaded.tokenizer, examples, spec, eval_decode_config(),
                       strategy=loaded.strategy(), prompt=prompt, output_dir=seed_dir / name / "eval")
    batch_1 = evaluate(loaded.model, loaded.tokenizer, examples[: cfg.batch_1_problems], spec,
                       DecodeConfig(max_new_tokens=eval_decode_config().max_new_tokens, batch_size=1),
                       strategy=loaded.strategy(), prompt=prompt)
    result = {"row": name, "label": row.label, "variant": variant, "seed": seed, "model_dir": str(model_dir),
              "accuracy": metrics["accuracy"], "mean_generated_tokens": metrics["mean_generated_tokens"],
              "mean_decode_steps": metrics.get("mean_decode_steps"),
              "latency_batch_1_s": batch_1["latency_per_example_s"], "train_seconds": train_seconds,
              "start": row.start, "thoughts": None}
    if row.thoughts:
        result["thoughts"] = thought_drops(model_dir, seed_dir / name / "thoughts", variant, seed, cfg)
    write_text_atomic(result_file, json.dumps(result, indent=2) + "\n")
    return result


def thought_drops(model_dir: Path, out_dir: Path, variant: str, seed: int, cfg: CompareConfig) -> dict[str, Any]:
    """The do-the-thoughts-matter summary of a latent model (`mentalese analyze thoughts`): accuracy and
    attention per intervention (kept, another problem's thoughts, zeroed, same-norm noise)."""
    from mentalese.analysis.thought_interventions import ThoughtsConfig, run_thoughts

    tool = ThoughtsConfig(model=str(model_dir), benchmark="chain", split="test", limit=cfg.thought_examples,
                          output_dir=str(out_dir), seed=seed, interventions=["kept", "swap", "zero", "noise"],
                          task_options=cfg.task_options(variant, "test", seed), dtype="float32")
    report = run_thoughts(tool)
    return {name: {k: v[k] for k in ("accuracy", "accuracy_drop", "attention_on_thoughts",
                                     "attention_on_prompt_reference")}
            for name, v in report["interventions"].items()}
