"""CODI vs CoT-SFT efficiency: token compression, answer latency, and a training-step benchmark.

- `compare_efficiency(cfg)`: decodes the same test problems with a CODI model and a CoT-SFT model
  (same base), at batch 1 and batched; compression = mean CoT tokens written by CoT-SFT / (n + 2)
  (n thoughts plus <bot> and <eot>, as in the paper), speedup = CoT-SFT latency / CODI latency.
- `bench_train_step(cfg)`: seconds per optimizer step and peak memory of CODI vs CoT-SFT on the
  same model and batch, each measured in a fresh child process (peak RSS on CPU, peak allocated
  memory on CUDA). A benchmark that writes JSON, never a timed test.
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mentalese.decoding.loop import DecodeConfig
from mentalese.evaluation.harness import evaluate
from mentalese.atomic_files import write_text_atomic
from mentalese.methods.formatting import ANSWER_PROMPT
from mentalese.models.loading import load_model_and_tokenizer
from mentalese.tasks.registry import get_benchmark, load_benchmark


@dataclass
class EfficiencyConfig:
    codi_model: str = field(default="", metadata={"help": "saved CODI model directory (train output_dir/model)"})
    cot_model: str = field(default="", metadata={"help": "CoT-SFT model directory on the same base"})
    benchmark: str = field(default="chain", metadata={"help": "registered benchmark"})
    split: str | None = field(default=None, metadata={"help": "split; default: the benchmark's default"})
    task_options: dict = field(default_factory=dict, metadata={"help": "options for synthetic benchmarks"})
    limit: int = field(default=100, metadata={"help": "problems to decode"})
    batch_1_limit: int = field(default=50, metadata={"help": "problems decoded one by one (latency at batch 1)"})
    batch_size: int = field(default=64, metadata={"help": "batch size of the batched measurement"})
    max_new_tokens: int = field(default=128, metadata={"help": "decode steps per row (latent steps count)"})
    device: str = field(default="auto", metadata={"help": "cpu / cuda / auto"})
    output: str = field(default="runs/codi_efficiency/efficiency.json", metadata={"help": "JSON output path"})


def cot_token_count(text: str, tokenizer, answer_prompt: str = ANSWER_PROMPT) -> int:
    """Tokens a CoT-SFT output spends before its answer prompt."""
    cot = text.split(answer_prompt)[0]
    return len(tokenizer(cot, add_special_tokens=False)["input_ids"])


def compare_efficiency(cfg: EfficiencyConfig) -> dict[str, Any]:
    from mentalese.methods.codi.model import load_codi

    spec = get_benchmark(cfg.benchmark)
    examples = load_benchmark(cfg.benchmark, cfg.split, limit=cfg.limit, **cfg.task_options)
    codi, codi_tok = load_codi(cfg.codi_model, device=cfg.device)
    cot, cot_tok = load_model_and_tokenizer(cfg.cot_model, dtype="float32", device=cfg.device)
    out_dir = Path(cfg.output).parent
    result: dict[str, Any] = {"benchmark": cfg.benchmark, "num_examples": len(examples),
                              "num_latent": codi.spec.num_latent, "machine": platform.processor() or platform.machine()}
    for batch, subset in (("batch_1", examples[: cfg.batch_1_limit]), (f"batch_{cfg.batch_size}", examples)):
        bs = 1 if batch == "batch_1" else cfg.batch_size
        decode_cfg = DecodeConfig(max_new_tokens=cfg.max_new_tokens, batch_size=bs)
        m_codi = evaluate(codi.lm, codi_tok, subset, spec, decode_cfg, strategy=codi.strategy(),
                          output_dir=out_dir / f"codi_{batch}")
        m_cot = evaluate(cot, cot_tok, subset, spec, decode_cfg, output_dir=out_dir / f"cot_{batch}")
        result[batch] = {
            "num_examples": len(subset),
            "codi_latency_s": m_codi["latency_per_example_s"], "cot_latency_s": m_cot["latency_per_example_s"],
            "speedup": m_cot["latency_per_example_s"] / m_codi["latency_per_example_s"],
            "codi_accuracy": m_codi["accuracy"], "cot_accuracy": m_cot["accuracy"],
            "codi_generated_tokens": m_codi["mean_generated_tokens"],
            "cot_generated_tokens": m_cot["mean_generated_tokens"],
        }
    with (out_dir / f"cot_batch_{cfg.batch_size}" / "predictions.jsonl").open() as f:
        texts = [json.loads(line)["samples"][0]["text"] for line in f]
    mean_cot = statistics.mean(cot_token_count(t, cot_tok) for t in texts)
    result["cot_sft_mean_cot_tokens"] = mean_cot
    result["compression"] = mean_cot / (codi.spec.num_latent + 2)
    write_text_atomic(Path(cfg.output), json.dumps(result, indent=2))
    return result


@dataclass
class TrainStepBenchConfig:
    arch: str = field(default="gpt2", metadata={"help": "tiny architecture (random weights)"})
    width: int = field(default=128, metadata={"help": "hidden size"})
    layers: int = field(default=2, metadata={"help": "layers"})
    batch_size: int = field(default=32, metadata={"help": "examples per step (chain task, 4 steps)"})
    num_latent: int = field(default=4, metadata={"help": "CODI continuous thoughts"})
    steps: int = field(default=10, metadata={"help": "timed optimizer steps (median reported), after 2 warm-up"})
    device: str = field(default="cpu", metadata={"help": "cpu / cuda"})
    output: str = field(default="runs/bench/codi_train_step.json", metadata={"help": "JSON output path"})


def _train_step_child(method: str, cfg: TrainStepBenchConfig, queue) -> None:
    import tempfile

    from mentalese.config import load_config
    from mentalese.methods.codi.config import CODIConfig
    from mentalese.methods.codi.data import collate_codi, tokenize_codi_example
    from mentalese.methods.codi.loss import codi_loss
    from mentalese.methods.codi.model import build_codi_model
    from mentalese.methods.formatting import tokenize_sft_example
    from mentalese.models.tiny import tiny_size_overrides
    from mentalese.tasks.synthetic import generate_chain

    device = torch.device(cfg.device)
    with tempfile.TemporaryDirectory() as tmp:
        size = tiny_size_overrides(cfg.arch, cfg.width, cfg.layers)
        codi_cfg = load_config(CODIConfig, None, [f"output_dir={tmp}", f"model_name_or_path=tiny-{cfg.arch}",
                                                  f"num_latent={cfg.num_latent}", "report_to=none",
                                                  f"use_cpu={cfg.device == 'cpu'}", f"tiny_model_options={json.dumps(size)}"])
        model, tok = build_codi_model(codi_cfg)
    model.to(device).train()
    examples = generate_chain("train", num_examples=cfg.batch_size, num_steps=4)
    if method == "codi":
        rows = [tokenize_codi_example(ex, tok, "{question}\n", codi_cfg) for ex in examples]
        batch = {k: v.to(device) for k, v in collate_codi(rows, tok.pad_token_id, model.bot_id, model.eot_id).items()}
        loss_fn = lambda: codi_loss(model.lm, model.projection, batch, cfg.num_latent).loss  # noqa: E731
    else:
        toks = [tokenize_sft_example(ex, tok, "{question}\n", cot=True) for ex in examples]
        width = max(len(t.input_ids) for t in toks)
        ids = torch.tensor([t.input_ids + [tok.pad_token_id] * (width - len(t.input_ids)) for t in toks], device=device)
        labels = torch.tensor([t.labels + [-100] * (width - len(t.labels)) for t in toks], device=device)
        mask = (torch.arange(width, device=device)[None] < torch.tensor([len(t.input_ids) for t in toks], device=device)[:, None]).long()
        loss_fn = lambda: model.lm(input_ids=ids, attention_mask=mask, labels=labels).loss  # noqa: E731
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for i in range(cfg.steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss_fn().backward()
        opt.step()
        opt.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    queue.put({"step_s_median": statistics.median(times), "peak_memory_bytes": peak,
               "memory_kind": "cuda max allocated" if device.type == "cuda" else "process peak RSS"})


def bench_train_step(cfg: TrainStepBenchConfig) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    result: dict[str, Any] = {"config": vars(cfg).copy(), "torch_threads": torch.get_num_threads()}
    for method in ("cot_sft", "codi"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_train_step_child, args=(method, cfg, queue))
        proc.start()
        result[method] = queue.get()
        proc.join()
    result["codi_over_cot_time"] = result["codi"]["step_s_median"] / result["cot_sft"]["step_s_median"]
    result["codi_over_cot_memory"] = result["codi"]["peak_memory_bytes"] / result["cot_sft"]["peak_memory_bytes"]
    write_text_atomic(Path(cfg.output), json.dumps(result, indent=2))
    return result
