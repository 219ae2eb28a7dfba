"""`latentlab eval`: load a model and a benchmark from an `EvalConfig` and evaluate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from latentlab.config import save_config
from latentlab.evaluation.harness import EvalConfig, evaluate, write_atomic
from latentlab.errors import LatentLabError
from latentlab.models.loading import load_model_and_tokenizer
from latentlab.tasks.registry import get_benchmark, load_benchmark


def run_eval(cfg: EvalConfig, progress: bool = True) -> dict[str, Any]:
    if not cfg.model:
        raise LatentLabError("eval needs model=<hub name or path>")
    spec = get_benchmark(cfg.benchmark)
    examples = load_benchmark(cfg.benchmark, cfg.split, data_dir=cfg.data_dir, limit=cfg.limit, **cfg.task_options)
    model, tokenizer = load_model_and_tokenizer(cfg.model, dtype=cfg.dtype, device=cfg.device)
    out = Path(cfg.output_dir)
    save_config(cfg, out / "config.yaml")
    strategy = None
    if cfg.soft_thinking is not None:
        from latentlab.decoding.soft_thinking import SoftThinkingStrategy

        strategy = SoftThinkingStrategy(cfg.soft_thinking, tokenizer)
    metrics = evaluate(model, tokenizer, examples, spec, cfg.decode, strategy, num_samples=cfg.num_samples,
                       prompt=cfg.prompt, output_dir=out, progress=progress)
    metrics["model"] = cfg.model
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
