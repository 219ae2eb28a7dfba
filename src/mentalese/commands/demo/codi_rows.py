"""The CODI rows of `mentalese demo`: CODI on the chain task, and (with codi_ablations=true) CODI without
the per-thought result loss (plain CODI, step_supervision.kind=none), without the distillation loss (beta=0)
and without the projection.

CODI fine-tunes a model that can already read and write text; the tiny demo models start random, so
by default (`codi_from_cot_sft`) the CODI rows start from the cot-sft row's model (trained first if
missing): it stands in for the pretrained LM. The recipe (codi/chain) adds the per-thought result loss,
which is not part of CODI: without it the student stays at chance on this task (docs/LOG.md).

The notes column carries the token compression (CoT-SFT's mean CoT tokens / (n + 2)); the timings
table the speedup at batch 1 over CoT-SFT (measured on `BATCH_1_PROBLEMS` problems when the cot-sft
row's model is in the same run directory).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mentalese.analysis.plots import read_loss_curve
from mentalese.atomic_files import write_text_atomic
from mentalese.commands.demo.sft_rows import PROGRESS_BAR, sft_row
from mentalese.commands.demo.shared import RowResult, eval_decode_config, test_examples
from mentalese.config import load_config
from mentalese.decoding.loop import DecodeConfig
from mentalese.evaluation.harness import evaluate
from mentalese.methods.codi.config import CODIConfig
from mentalese.methods.codi.efficiency import cot_token_count
from mentalese.methods.codi.model import load_codi
from mentalese.methods.codi.trainer import train_codi
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.recipes import resolve_recipe
from mentalese.tasks.registry import get_benchmark

if TYPE_CHECKING:
    from mentalese.commands.demo.run import DemoConfig

BATCH_1_PROBLEMS = 30
TRAIN_STEPS = {False: 800, True: 150}  # codi_train_steps when unset, by quick
ABLATIONS = {"CODI w/o thought loss (plain CODI)": ["step_supervision.kind=none"], "CODI w/o distillation": ["beta=0"],
             "CODI w/o projection": ["use_projection=false"]}


def start_model(cfg: DemoConfig, run_dir: Path) -> str:
    if not cfg.codi_from_cot_sft:
        return f"tiny-{cfg.arch}"
    cot_dir = run_dir.parent / "cot-sft"
    if not (cot_dir / "model" / "config.json").exists():
        sft_row(cfg, cot_dir, cot=True)
    return str((cot_dir / "model").resolve())


def train_or_reuse(cfg: DemoConfig, run_dir: Path, overrides: list[str]) -> tuple[Path, float | None]:
    steps = cfg.codi_train_steps or TRAIN_STEPS[cfg.quick]
    codi = load_config(CODIConfig, resolve_recipe("codi/chain"), [
        f"output_dir={run_dir}", f"model_name_or_path={start_model(cfg, run_dir)}", f"max_steps={steps}",
        f"seed={cfg.seed}", f"task_options={json.dumps(cfg.task_options('train'))}", PROGRESS_BAR,
        f"num_latent={cfg.codi_num_latent}", *overrides])
    model_dir = run_dir / "model"
    seconds_file = run_dir / "train_seconds.txt"
    if not (model_dir / "codi_config.json").exists():
        start = time.perf_counter()
        train_codi(codi)
        write_text_atomic(seconds_file, f"{time.perf_counter() - start:.2f}\n")
    return model_dir, float(seconds_file.read_text()) if seconds_file.exists() else None


def batch_1_latency(model, tokenizer, examples, strategy=None) -> float:
    config = DecodeConfig(max_new_tokens=eval_decode_config().max_new_tokens, batch_size=1)
    return evaluate(model, tokenizer, examples, get_benchmark("chain"), config, strategy=strategy)["latency_per_example_s"]


def efficiency_notes(codi, tokenizer, cfg: DemoConfig, run_dir: Path, metrics: dict) -> tuple[str, str]:
    """(notes, timing notes): the compression is a token count, the speedup a timing."""
    cot_dir = run_dir.parent / "cot-sft"
    if not (cot_dir / "model" / "config.json").exists() or not (cot_dir / "eval" / "predictions.jsonl").exists():
        return f"{codi.spec.num_latent} thoughts (run with cot-sft for compression/speedup)", ""
    with (cot_dir / "eval" / "predictions.jsonl").open() as f:
        texts = [json.loads(line)["samples"][0]["text"] for line in f]
    cot_model, cot_tok = load_model_and_tokenizer(cot_dir / "model", dtype="float32", device="auto")
    compression = statistics.mean(cot_token_count(t, cot_tok) for t in texts) / (codi.spec.num_latent + 2)
    subset = test_examples(cfg)[:BATCH_1_PROBLEMS]
    speedup = batch_1_latency(cot_model, cot_tok, subset) / batch_1_latency(codi.lm, tokenizer, subset, codi.strategy())
    metrics.update(compression=compression, speedup_batch_1=speedup)
    return (f"{codi.spec.num_latent} thoughts; compression {compression:.1f}x",
            f"speedup {speedup:.1f}x over CoT-SFT at batch 1")


def codi_rows(cfg: DemoConfig, run_dir: Path) -> list[RowResult]:
    variants = {"CODI": []} | (ABLATIONS if cfg.codi_ablations else {})
    results = []
    for name, overrides in variants.items():
        sub = run_dir if name == "CODI" else run_dir.parent / ("codi-" + name.split("w/o ")[1])
        model_dir, train_seconds = train_or_reuse(cfg, sub, overrides)
        codi, tok = load_codi(model_dir)
        metrics = evaluate(codi.lm, tok, test_examples(cfg), get_benchmark("chain"), eval_decode_config(),
                           strategy=codi.strategy(), output_dir=sub / "eval")
        notes, timing = (efficiency_notes(codi, tok, cfg, run_dir, metrics) if name == "CODI"
                         else (", ".join(overrides), ""))
        results.append(RowResult(name, metrics, sub / "eval", train_seconds, read_loss_curve(sub), notes, timing))
    return results
