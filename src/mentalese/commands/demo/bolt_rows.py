"""The demo's `bolt` rows: raw-only vs teacher latent thoughts vs one EM iteration.

Runs the toy experiment (experiment.py) at demo size in the row's folder: a raw-only model, a
warm start on teacher derivations for a quarter of the documents, and one EM iteration (K=4,
importance resampling) from that warm start, every M-step with the same optimizer steps. The toy
uses its own 2-step problems (see recipes/bolt/toy_chain.yaml), not the demo's chain setting.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mentalese.analysis.plots import read_loss_curve
from mentalese.atomic_files import write_text_atomic
from mentalese.commands.demo.shared import RowResult
from mentalese.console import verbose
from mentalese.methods.bolt.experiment import ToyExperimentConfig, run_toy_experiment

if TYPE_CHECKING:
    from mentalese.commands.demo.run import DemoConfig

# the recipe trains 2000 steps on 2800 documents (~3 min per M-step); the demo keeps 240 documents and
# 60 steps (~25 s for the three rows on an idle machine). disable_tqdm=false: sft_rows.PROGRESS_BAR
DEMO = ["toy_options.documents=240", "teacher_docs=80", "max_steps=60", "per_device_train_batch_size=16",
        "task_options.num_examples=100", "disable_tqdm=false"]
DEMO_QUICK = ["toy_options.documents=40", "teacher_docs=10", "max_steps=8", "per_device_train_batch_size=8",
              "task_options.num_examples=20", "estep.max_thought_tokens=16", "eval_max_new_tokens=24",
              "disable_tqdm=false"]
NAMES = {"raw-compute": "BoLT raw only", "teacher": "BoLT teacher thoughts", "em-k4": "BoLT EM iter 1 (K=4)"}


def bolt_rows(cfg: DemoConfig, run_dir: Path) -> list[RowResult]:
    overrides = (DEMO_QUICK if cfg.quick else DEMO) + [f"seed={cfg.seed}"]
    exp = ToyExperimentConfig(output_dir=str(run_dir), variants=list(NAMES), iterations=1, overrides=overrides)
    seconds_file = run_dir / "wall_seconds.txt"
    if not (run_dir / "results.json").exists():
        start = time.perf_counter()
        # the experiment prints a line per variant; the demo shows one result line per row instead
        with contextlib.nullcontext() if verbose() else contextlib.redirect_stdout(io.StringIO()):
            run_toy_experiment(exp)
        write_text_atomic(seconds_file, f"{time.perf_counter() - start:.2f}\n")
    rows = json.loads((run_dir / "results.json").read_text())
    out = []
    for r in rows:
        it_dir = run_dir / r["variant"] / f"iter_{r['iteration']}"
        metrics = json.loads((it_dir / "eval" / "metrics.json").read_text())
        train = json.loads((it_dir / "mstep" / "train_metrics.json").read_text())
        notes = f"{train['chunks_with_thought']}/{train['chunks']} chunks with thoughts"
        if "eval_thoughts_correct" in r:
            notes += f"; exact thoughts {100 * r['eval_thoughts_correct']:.0f}%"
        if r.get("proposer_elbo_k4_chunks"):
            notes += f"; ELBO k1 {r['proposer_elbo_k1']:.1f} -> k4 {r['proposer_elbo_k4']:.1f}"
        elif "proposer_elbo_k4" in r:
            notes += "; ELBO undefined (no chunk with 4 closed proposals)"
        out.append(RowResult(NAMES[r["variant"]], metrics, it_dir / "eval", train.get("train_runtime"),
                             read_loss_curve(it_dir / "mstep"), notes=notes))
    section = (run_dir / "report.md").read_text().split("## Reproduce")[0].replace("](bolt_toy.png)",
                                                                                  f"]({run_dir.name}/bolt_toy.png)")
    size = ("The full toy experiment, `mentalese demo bolt-toy` (about 45 min on one core), is where the method "
            "shows; its measured results are in docs/bolt.md. The toy experiment's own report at demo size:\n")
    out[-1].report_section = size + section.split("\n", 1)[1]
    return out
