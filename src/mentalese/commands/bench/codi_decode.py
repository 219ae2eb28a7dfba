"""`mentalese bench codi-decode`: CODI vs CoT-SFT (same base) on the same test problems.

At batch 1 (the first `batch_1_limit` problems) and batched (all `limit` problems): accuracy and
generated tokens from the evaluation harness, answer latency per problem from the one timer
(warm-up, median of `repeats` decodes of the same prompts). Compression = mean CoT tokens written
by CoT-SFT / (n + 2) (n thoughts plus <bot> and <eot>, as in the paper); speedup = CoT-SFT latency /
CODI latency.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentalese.commands.bench.record import environment, write_result
from mentalese.commands.bench.timer import time_call
from mentalese.config import config_to_dict
from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.evaluation.harness import evaluate
from mentalese.methods.codi.efficiency import cot_token_count
from mentalese.methods.codi.model import load_codi
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.tasks.registry import get_benchmark, load_benchmark, render_prompt


@dataclass
class CodiDecodeBenchConfig:
    codi_model: str = field(default="", metadata={"help": "saved CODI model directory (train output_dir/model)"})
    cot_model: str = field(default="", metadata={"help": "CoT-SFT model directory on the same base"})
    benchmark: str = field(default="chain", metadata={"help": "registered benchmark"})
    split: str | None = field(default=None, metadata={"help": "split; default: the benchmark's default"})
    task_options: dict = field(default_factory=dict, metadata={"help": "options for synthetic benchmarks"})
    limit: int = field(default=100, metadata={"help": "problems to decode"})
    batch_1_limit: int = field(default=50, metadata={"help": "problems decoded one by one (latency at batch 1)"})
    batch_size: int = field(default=64, metadata={"help": "batch size of the batched measurement"})
    max_new_tokens: int = field(default=128, metadata={"help": "decode steps per row (latent steps count)"})
    repeats: int = field(default=3, metadata={"help": "timed decodes per setting after one warm-up (median)"})
    device: str = field(default="auto", metadata={"help": "cpu / cuda / auto"})
    output: str = field(default="runs/codi_efficiency/efficiency.json", metadata={"help": "JSON output path"})


def bench_codi_decode(cfg: CodiDecodeBenchConfig) -> dict[str, Any]:
    spec = get_benchmark(cfg.benchmark)
    examples = load_benchmark(cfg.benchmark, cfg.split, limit=cfg.limit, **cfg.task_options)
    codi, codi_tok = load_codi(cfg.codi_model, device=cfg.device)
    cot, cot_tok = load_model_and_tokenizer(cfg.cot_model, dtype="float32", device=cfg.device)
    device = cot.get_input_embeddings().weight.device
    out_dir = Path(cfg.output).parent
    models = {"codi": (codi.lm, codi_tok, codi.strategy()), "cot": (cot, cot_tok, None)}
    result: dict[str, Any] = {"benchmark": cfg.benchmark, "num_examples": len(examples),
                              "num_latent": codi.spec.num_latent, "config": config_to_dict(cfg),
                              "environment": environment(device)}
    for bs, subset in ((1, examples[: cfg.batch_1_limit]), (cfg.batch_size, examples)):
        batch = f"batch_{bs}"
        decode_cfg = DecodeConfig(max_new_tokens=cfg.max_new_tokens, batch_size=bs)
        prompts = [render_prompt(spec.prompt, ex.question) for ex in subset]
        row: dict[str, Any] = {"num_examples": len(subset)}
        for name, (model, tok, strategy) in models.items():
            metrics = evaluate(model, tok, subset, spec, decode_cfg, strategy=strategy,
                               output_dir=out_dir / f"{name}_{batch}")
            timing = time_call(lambda: decode(model, tok, prompts, decode_cfg, strategy), device, cfg.repeats)
            row[f"{name}_latency_s"] = timing.median_s / len(subset)
            row[f"{name}_accuracy"] = metrics["accuracy"]
            row[f"{name}_generated_tokens"] = metrics["mean_generated_tokens"]
        row["speedup"] = row["cot_latency_s"] / row["codi_latency_s"]
        result[batch] = row
    with (out_dir / f"cot_batch_{cfg.batch_size}" / "predictions.jsonl").open() as f:
        texts = [json.loads(line)["samples"][0]["text"] for line in f]
    mean_cot = statistics.mean(cot_token_count(t, cot_tok) for t in texts)
    result["cot_sft_mean_cot_tokens"] = mean_cot
    result["compression"] = mean_cot / (codi.spec.num_latent + 2)
    return write_result(cfg.output, result)
