"""The baseline rows: a tiny model fine-tuned to write the steps then the answer (cot-sft), or the
answer directly (nocot-sft). Each trains (or reuses) its model in its own folder, then evaluates."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mentalese.analysis.plots import read_loss_curve
from mentalese.atomic_files import write_text_atomic
from mentalese.commands.demo.shared import RowResult, eval_decode_config, test_examples
from mentalese.config import load_config
from mentalese.evaluation.harness import evaluate
from mentalese.methods.sft import SFTConfig, train_sft
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.recipes import resolve_recipe
from mentalese.tasks.registry import get_benchmark

if TYPE_CHECKING:
    from mentalese.commands.demo.run import DemoConfig

# the training progress bar on a terminal: TrainingArguments turns it off by default when transformers'
# logging is quieter than WARNING, as the CLI sets it
PROGRESS_BAR = "disable_tqdm=false"


def sft_row(cfg: DemoConfig, run_dir: Path, cot: bool) -> list[RowResult]:
    recipe = resolve_recipe("sft/chain_cot" if cot else "sft/chain_nocot")
    sft = load_config(SFTConfig, recipe, [
        f"output_dir={run_dir}", f"model_name_or_path=tiny-{cfg.arch}", f"max_steps={cfg.train_steps}",
        f"seed={cfg.seed}", f"task_options={json.dumps(cfg.task_options('train'))}", PROGRESS_BAR,
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


def cot_sft_rows(cfg: DemoConfig, run_dir: Path) -> list[RowResult]:
    return sft_row(cfg, run_dir, cot=True)


def nocot_sft_rows(cfg: DemoConfig, run_dir: Path) -> list[RowResult]:
    return sft_row(cfg, run_dir, cot=False)
