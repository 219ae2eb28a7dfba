"""`latentlab codi-eval`: a saved CODI model on any registered benchmark through the harness.

Same `EvalConfig` as `latentlab eval` (model = a `save_codi` directory); decoding goes through
`CODIStrategy`, so `decode.max_new_tokens` counts the n + 2 latent steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from latentlab.config import save_config
from latentlab.errors import LatentLabError
from latentlab.evaluation.harness import EvalConfig, evaluate, write_atomic
from latentlab.tasks.registry import get_benchmark, load_benchmark


def run_codi_eval(cfg: EvalConfig, progress: bool = True) -> dict[str, Any]:
    from latentlab.methods.codi.model import load_codi

    if not cfg.model:
        raise LatentLabError("codi-eval needs model=<saved CODI directory>")
    spec = get_benchmark(cfg.benchmark)
    examples = load_benchmark(cfg.benchmark, cfg.split, data_dir=cfg.data_dir, limit=cfg.limit, **cfg.task_options)
    model, tokenizer = load_codi(cfg.model, dtype="float32" if cfg.dtype == "auto" else cfg.dtype, device=cfg.device)
    out = Path(cfg.output_dir)
    save_config(cfg, out / "config.yaml")
    metrics = evaluate(model.lm, tokenizer, examples, spec, cfg.decode, model.strategy(cfg.decode.sampling()),
                       num_samples=cfg.num_samples, prompt=cfg.prompt, output_dir=out, progress=progress)
    metrics.update(model=cfg.model, method="codi", num_latent=model.spec.num_latent)
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
