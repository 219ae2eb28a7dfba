"""`mentalese bench decode`: our greedy loop vs `model.generate` on the same model, prompts, batch
and token budget; reports both throughputs, their ratio (ours / generate) and whether the tokens
are identical. Both are timed by the one timer (warm-up, median of `repeats`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

import torch

from mentalese.commands.bench.record import environment, write_result
from mentalese.commands.bench.timer import time_call
from mentalese.config import config_to_dict
from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.models.loading import load_model_and_tokenizer, resolve_device
from mentalese.models.tiny import build_tiny_model, char_tokenizer, tiny_size_overrides
from mentalese.tasks.synthetic import generate_chain


@dataclass
class DecodeBenchConfig:
    model: str = field(default="", metadata={"help": "model path/name; empty = random tiny model of `arch`"})
    arch: str = field(default="gpt2", metadata={"help": "tiny architecture when model is empty"})
    width: int = field(default=128, metadata={"help": "hidden size of the random model (768 ~ GPT-2 small)"})
    layers: int = field(default=2, metadata={"help": "layers of the random model"})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32], metadata={"help": "batch sizes to time"})
    max_new_tokens: int = field(default=64, metadata={"help": "new tokens per row"})
    repeats: int = field(default=3, metadata={"help": "timed repeats after one warm-up (median reported)"})
    device: str = field(default="auto", metadata={"help": "cpu / cuda / auto"})
    dtype: str = field(default="float32", metadata={"help": "model dtype"})
    output: str = field(default="runs/bench/decode.json", metadata={"help": "JSON output path"})


def bench_decode(cfg: DecodeBenchConfig) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    path = cfg.model
    if not path:
        path = tempfile.mkdtemp(prefix="mentalese-bench-")
        sizes = tiny_size_overrides(cfg.arch, cfg.width, cfg.layers, heads=max(1, cfg.width // 64))
        build_tiny_model(cfg.arch, char_tokenizer(), path, **sizes)
    model, tok = load_model_and_tokenizer(path, dtype=cfg.dtype, device=str(device))
    model.eval()
    questions = [ex.question + "\n" for ex in generate_chain("test", num_examples=max(cfg.batch_sizes))]
    rows = []
    for bs in cfg.batch_sizes:
        prompts = questions[:bs]
        dc = DecodeConfig(max_new_tokens=cfg.max_new_tokens, batch_size=bs)
        ours = time_call(lambda: decode(model, tok, prompts, dc), device, cfg.repeats)
        tok.padding_side = "left"
        enc = tok(prompts, return_tensors="pt", padding=True).to(device)

        def run_generate():
            with torch.no_grad():
                return model.generate(**enc, do_sample=False, max_new_tokens=cfg.max_new_tokens,
                                      pad_token_id=tok.pad_token_id)

        gen = time_call(run_generate, device, cfg.repeats)
        gen_new = gen.result[:, enc["input_ids"].shape[1]:].tolist()
        equal = all(r.token_ids == g[: len(r.token_ids)] for r, g in zip(ours.result, gen_new))
        n_tokens = sum(r.num_tokens for r in ours.result)
        rows.append({
            "batch_size": bs, "generated_tokens": n_tokens,
            "mentalese_s": ours.median_s, "generate_s": gen.median_s,
            "mentalese_tokens_per_s": n_tokens / ours.median_s, "generate_tokens_per_s": n_tokens / gen.median_s,
            "throughput_ratio": gen.median_s / ours.median_s, "outputs_equal": equal,
        })
    return write_result(cfg.output, {
        "benchmark": "decode", "config": config_to_dict(cfg), "environment": environment(device),
        "model_parameters": sum(p.numel() for p in model.parameters()), "results": rows})
