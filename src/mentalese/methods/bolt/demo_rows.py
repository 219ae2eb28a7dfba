"""The demo's `bolt` rows: raw-only vs teacher latent thoughts vs one EM iteration.

Runs the toy experiment (experiment.py) at demo size in the row's folder: a raw-only model, a
warm start on teacher derivations for a quarter of the documents, and one EM iteration (K=4,
importance resampling) from that warm start, every M-step with the same optimizer steps. The toy
uses its own 2-step problems (see recipes/bolt/toy_chain.yaml), not the demo's chain setting.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mentalese.atomic_files import write_text_atomic
from mentalese.analysis.plots import read_loss_curve
from mentalese.demo import DemoConfig, DemoRow, RowResult, register_row
from mentalese.methods.bolt.experiment import ToyExperimentConfig, run_toy_experiment

# the recipe trains 2000 steps on 2800 documents (~3 min per M-step); the demo keeps 240 documents and
# 60 steps (~25 s for the three rows on an idle machine)
DEMO = ["toy_options.documents=240", "teacher_docs=80", "max_steps=60", "per_device_train_batch_size=16",
        "task_options.num_examples=100"]
DEMO_QUICK = ["toy_options.documents=40", "teacher_docs=10", "max_steps=8", "per_device_train_batch_size=8",
              "task_options.num_examples=20", "estep.max_thought_tokens=16", "eval_max_new_tokens=24"]
NAMES = {"raw-compute": "BoLT raw only", "teacher": "BoLT teacher thoughts", "em-k4": "BoLT EM iter 1 (K=4)"}


def bolt_rows(cfg: DemoConfig, run_dir: Path) -> list[RowResult]:
    overrides = (DEMO_QUICK if cfg.quick else DEMO) + [f"seed={cfg.seed}"]
    exp = ToyExperimentConfig(output_dir=str(run_dir), variants=list(NAMES), iterations=1, overrides=overrides)
    seconds_file = run_dir / "wall_seconds.txt"
    if not (run_dir / "results.json").exists():
        start = time.perf_counter()
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
        if "proposer_elbo_k4" in r:
            notes += f"; ELBO k1 {r['proposer_elbo_k1']:.1f} -> k4 {r['proposer_elbo_k4']:.1f}"
        out.append(RowResult(NAMES[r["variant"]], metrics, it_dir / "eval", train.get("train_runtime"),
                             read_loss_curve(it_dir / "mstep"), notes=notes))
    section = (run_dir / "report.md").read_text().split("## Reproduce")[0].replace("](bolt_toy.png)",
                                                                                  f"]({run_dir.name}/bolt_toy.png)")
    size = ("At demo size (a few hundred documents, tens of steps) no BoLT model learns the task yet: these rows "
            "check the pipeline. The full toy experiment, `mentalese bolt-toy` (about 45 min on one core), "
            "is where the method shows; its measured results are in docs/bolt.md.\n")
    out[-1].report_section = "## BoLT rows\n" + size + section.split("\n", 1)[1]
    return out


register_row(DemoRow("bolt", "BoLT toy: raw vs teacher latent thoughts vs one EM iteration", bolt_rows))
