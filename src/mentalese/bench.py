"""`mentalese bench`: speed and memory benchmarks that write JSON (never timed tests).

- decode: our greedy loop vs `model.generate` on the same model, prompts, batch and tokens;
  reports both throughputs, their ratio (ours / generate) and whether the tokens are identical.
- demo:   wall time and peak resident memory of `mentalese demo` run in a child process.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mentalese.config import config_to_dict, load_config
from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.atomic_files import write_text_atomic
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
    repeats: int = field(default=3, metadata={"help": "timed repeats (median reported)"})
    device: str = field(default="auto", metadata={"help": "cpu / cuda / auto"})
    dtype: str = field(default="float32", metadata={"help": "model dtype"})
    output: str = field(default="runs/bench/decode.json", metadata={"help": "JSON output path"})


@dataclass
class DemoBenchConfig:
    quick: bool = field(default=False, metadata={"help": "benchmark the quick demo setting"})
    output: str = field(default="runs/bench/demo.json", metadata={"help": "JSON output path"})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, repeats: int, device: torch.device) -> tuple[float, Any]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], out


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
        ours_s, ours = _median_time(lambda: decode(model, tok, prompts, dc), cfg.repeats, device)
        tok.padding_side = "left"
        enc = tok(prompts, return_tensors="pt", padding=True).to(device)

        def run_generate():
            with torch.no_grad():
                return model.generate(**enc, do_sample=False, max_new_tokens=cfg.max_new_tokens,
                                      pad_token_id=tok.pad_token_id)

        gen_s, gen = _median_time(run_generate, cfg.repeats, device)
        gen_new = gen[:, enc["input_ids"].shape[1]:].tolist()
        equal = all(r.token_ids == g[: len(r.token_ids)] for r, g in zip(ours, gen_new))
        n_tokens = sum(r.num_tokens for r in ours)
        rows.append({
            "batch_size": bs, "generated_tokens": n_tokens,
            "mentalese_s": ours_s, "generate_s": gen_s,
            "mentalese_tokens_per_s": n_tokens / ours_s, "generate_tokens_per_s": n_tokens / gen_s,
            "throughput_ratio": gen_s / ours_s, "outputs_equal": equal,
        })
    return {"benchmark": "decode", "config": config_to_dict(cfg), "environment": environment(device),
            "model_parameters": sum(p.numel() for p in model.parameters()), "results": rows}


def bench_demo(cfg: DemoBenchConfig) -> dict[str, Any]:
    out_dir = tempfile.mkdtemp(prefix="mentalese-demo-bench-")
    cmd = [sys.executable, "-m", "mentalese.cli", "demo", f"output_dir={out_dir}"] + (["quick=true"] if cfg.quick else [])
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = {"benchmark": "demo", "config": config_to_dict(cfg), "environment": environment(torch.device("cpu")),
              "command": " ".join(cmd[1:]), "exit_code": proc.returncode, "wall_time_s": wall,
              "peak_rss_mib": peak_kib / 1024}
    results_file = Path(out_dir) / "results.json"
    if results_file.exists():
        result["demo_results"] = json.loads(results_file.read_text())
    else:
        result["stderr_tail"] = proc.stderr[-2000:]
    return result


def environment(device: torch.device) -> dict[str, Any]:
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "device": str(device),
           "cpu_threads": torch.get_num_threads(), "machine": platform.machine()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def run_bench(which: str, overrides: list[str]) -> dict[str, Any]:
    if which == "decode":
        cfg = load_config(DecodeBenchConfig, None, overrides)
        result = bench_decode(cfg)
    else:
        cfg = load_config(DemoBenchConfig, None, overrides)
        result = bench_demo(cfg)
    write_text_atomic(Path(cfg.output), json.dumps(result, indent=2))
    return result
