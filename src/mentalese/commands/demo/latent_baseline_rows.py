"""The iCoT-SI and Coconut rows of `mentalese demo`: the CODI paper's two other latent baselines, each
trained from the cot-sft row's model (as the CODI row is; `codi_from_cot_sft`) with its chain recipe
(recipes/icot/chain.yaml, recipes/coconut/chain.yaml). At demo size both stay near the No-CoT floor
(docs/comparison.md has them over 3 seeds): the rows show the methods run in the same loop and harness,
not that they work on this task.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mentalese.analysis.plots import read_loss_curve
from mentalese.atomic_files import write_text_atomic
from mentalese.commands.demo.codi_rows import start_model
from mentalese.commands.demo.sft_rows import PROGRESS_BAR
from mentalese.commands.demo.shared import RowResult, eval_decode_config, test_examples
from mentalese.evaluation.harness import evaluate
from mentalese.tasks.registry import get_benchmark

if TYPE_CHECKING:
    from mentalese.commands.demo.run import DemoConfig

QUICK_STEPS = 40  # quick: optimizer steps of each row (the recipes' own otherwise: iCoT 400, Coconut 800)


def recipe_row(cfg: DemoConfig, run_dir: Path, label: str, recipe: str) -> RowResult:
    """Train (or reuse) `recipe` from the start model in `run_dir`, evaluate it with its own strategy."""
    from mentalese.api import load, train

    done, seconds_file = run_dir / "model_dir.txt", run_dir / "train_seconds.txt"
    if not done.exists():
        overrides = [f"output_dir={run_dir}", f"model_name_or_path={start_model(cfg, run_dir)}", f"seed={cfg.seed}",
                     f"task_options={json.dumps(cfg.task_options('train'))}", PROGRESS_BAR]
        if cfg.quick:
            overrides.append(f"max_steps={QUICK_STEPS}")
        began = time.perf_counter()
        model_dir = train(recipe, overrides)
        write_text_atomic(seconds_file, f"{time.perf_counter() - began:.2f}\n")
        write_text_atomic(done, f"{model_dir}\n")
    loaded = load(Path(done.read_text().strip()), dtype="float32")
    metrics = evaluate(loaded.model, loaded.tokenizer, test_examples(cfg), get_benchmark("chain"),
                       eval_decode_config(), strategy=loaded.strategy(), output_dir=run_dir / "eval")
    notes = f"{loaded.coconut.num_latent} continuous thoughts" if loaded.coconut is not None else ""
    return RowResult(label, metrics, run_dir / "eval", float(seconds_file.read_text()), read_loss_curve(run_dir),
                     notes)


def icot_rows(cfg: DemoConfig, run_dir: Path) -> list[RowResult]:
    return [recipe_row(cfg, run_dir, "iCoT-SI", "icot/chain")]


def coconut_rows(cfg: DemoConfig, run_dir: Path) -> list[RowResult]:
    return [recipe_row(cfg, run_dir, "Coconut", "coconut/chain")]
