"""`mentalese bench codi-train-step`: seconds per optimizer step and peak memory, CODI vs CoT-SFT.

Same random tiny model and batch (chain task, 4 steps); each method runs in a fresh child process
(peak RSS on CPU, peak allocated memory on CUDA) and its steps are timed by the one timer (2
warm-up steps, median of `steps`). Reports codi / cot ratios.
"""

from __future__ import annotations

import json
import multiprocessing
import queue as queue_module
import resource
import tempfile
from dataclasses import dataclass, field
from typing import Any

import torch

from mentalese.commands.bench.record import environment, write_result
from mentalese.commands.bench.timer import time_call
from mentalese.config import config_to_dict
from mentalese.errors import MentaleseError

WARMUP_STEPS = 2


@dataclass
class CodiTrainStepBenchConfig:
    arch: str = field(default="gpt2", metadata={"help": "tiny architecture (random weights)"})
    width: int = field(default=128, metadata={"help": "hidden size"})
    layers: int = field(default=2, metadata={"help": "layers"})
    batch_size: int = field(default=32, metadata={"help": "examples per step (chain task, 4 steps)"})
    num_latent: int = field(default=4, metadata={"help": "CODI continuous thoughts"})
    steps: int = field(default=10, metadata={
        "help": f"timed optimizer steps (median reported), after {WARMUP_STEPS} warm-up steps"})
    device: str = field(default="cpu", metadata={"help": "cpu / cuda"})
    output: str = field(default="runs/bench/codi_train_step.json", metadata={"help": "JSON output path"})


def _loss_function(method: str, cfg: CodiTrainStepBenchConfig, device: torch.device):
    """The model and a zero-argument function returning one batch's loss for `method`."""
    from mentalese.config import load_config
    from mentalese.methods.codi.config import CODIConfig
    from mentalese.methods.codi.data import collate_codi, tokenize_codi_example
    from mentalese.methods.codi.loss import codi_loss
    from mentalese.methods.codi.model import build_codi_model
    from mentalese.methods.formatting import tokenize_sft_example
    from mentalese.models.tiny import tiny_size_overrides
    from mentalese.tasks.synthetic import generate_chain

    with tempfile.TemporaryDirectory() as tmp:
        size = tiny_size_overrides(cfg.arch, cfg.width, cfg.layers)
        codi_cfg = load_config(CODIConfig, None, [
            f"output_dir={tmp}", f"model_name_or_path=tiny-{cfg.arch}", f"num_latent={cfg.num_latent}",
            "report_to=none", f"use_cpu={cfg.device == 'cpu'}", f"tiny_model_options={json.dumps(size)}"])
        model, tok = build_codi_model(codi_cfg)
    model.to(device).train()
    examples = generate_chain("train", num_examples=cfg.batch_size, num_steps=4)
    if method == "codi":
        rows = [tokenize_codi_example(ex, tok, "{question}\n", codi_cfg) for ex in examples]
        batch = {k: v.to(device) for k, v in collate_codi(rows, tok.pad_token_id, model.bot_id, model.eot_id).items()}
        return model, lambda: codi_loss(model.lm, model.projection, batch, cfg.num_latent).loss
    toks = [tokenize_sft_example(ex, tok, "{question}\n", cot=True) for ex in examples]
    width = max(len(t.input_ids) for t in toks)
    ids = torch.tensor([t.input_ids + [tok.pad_token_id] * (width - len(t.input_ids)) for t in toks], device=device)
    labels = torch.tensor([t.labels + [-100] * (width - len(t.labels)) for t in toks], device=device)
    lengths = torch.tensor([len(t.input_ids) for t in toks], device=device)
    mask = (torch.arange(width, device=device)[None] < lengths[:, None]).long()
    return model, lambda: model.lm(input_ids=ids, attention_mask=mask, labels=labels).loss


def _train_step_child(method: str, cfg: CodiTrainStepBenchConfig, queue) -> None:
    device = torch.device(cfg.device)
    model, loss_fn = _loss_function(method, cfg, device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        loss_fn().backward()
        opt.step()
        opt.zero_grad()

    timing = time_call(step, device, repeats=cfg.steps, warmup=WARMUP_STEPS)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux: KiB
    queue.put({"step_s_median": timing.median_s, "peak_memory_bytes": peak,
               "memory_kind": "cuda max allocated" if device.type == "cuda" else "process peak RSS"})


def _child_result(proc, queue, method: str) -> dict[str, Any]:
    """The child's one message; an error (not a hang) if it dies without sending it."""
    while proc.is_alive():
        try:
            out = queue.get(timeout=1.0)
            proc.join()
            return out
        except queue_module.Empty:
            pass
    try:
        return queue.get(timeout=5.0)
    except queue_module.Empty:
        raise MentaleseError(f"the {method} train-step child exited with code {proc.exitcode}") from None


def bench_codi_train_step(cfg: CodiTrainStepBenchConfig) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    result: dict[str, Any] = {"benchmark": "codi_train_step", "config": config_to_dict(cfg),
                              "environment": environment(cfg.device)}
    for method in ("cot_sft", "codi"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_train_step_child, args=(method, cfg, queue))
        proc.start()
        result[method] = _child_result(proc, queue, method)
    result["codi_over_cot_time"] = result["codi"]["step_s_median"] / result["cot_sft"]["step_s_median"]
    result["codi_over_cot_memory"] = result["codi"]["peak_memory_bytes"] / result["cot_sft"]["peak_memory_bytes"]
    return write_result(cfg.output, result)
