"""`latentlab codi-eval`: a saved CODI model on any registered benchmark through the harness.

Same `EvalConfig` as `latentlab eval` (model = a `save_codi` directory); decoding goes through
`CODIStrategy`, so `decode.max_new_tokens` counts the n + 2 latent steps. Sharded like every
harness run: resumable after a crash, split across processes under torchrun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latentlab.config import save_config
from latentlab.errors import LatentLabError
from latentlab.evaluation.harness import EvalConfig, evaluate
from latentlab.evaluation.run import eval_run_key, process_device
from latentlab.evaluation.sharding import current_processes
from latentlab.tasks.registry import get_benchmark, load_benchmark


def run_codi_eval(cfg: EvalConfig, progress: bool = True) -> dict[str, Any]:
    from latentlab.methods.codi.model import load_codi

    if not cfg.model:
        raise LatentLabError("codi-eval needs model=<saved CODI directory>")
    spec = get_benchmark(cfg.benchmark)
    examples = load_benchmark(cfg.benchmark, cfg.split, data_dir=cfg.data_dir, limit=cfg.limit, **cfg.task_options)
    procs = current_processes()
    model, tokenizer = load_codi(cfg.model, dtype="float32" if cfg.dtype == "auto" else cfg.dtype,
                                 device=process_device(cfg.device, procs))
    out = Path(cfg.output_dir)
    if procs.is_main:
        save_config(cfg, out / "config.yaml")
    return evaluate(model.lm, tokenizer, examples, spec, cfg.decode, model.strategy(cfg.decode.sampling()),
                    num_samples=cfg.num_samples, prompt=cfg.prompt, output_dir=out, progress=progress,
                    shard_size=cfg.shard_size, processes=procs, run_key=eval_run_key(cfg),
                    extra_metrics={"model": cfg.model, "method": "codi", "num_latent": model.spec.num_latent})
