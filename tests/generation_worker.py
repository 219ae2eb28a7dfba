"""Helpers for the data-parallel and crash-resume generation tests, and their subprocess entry.

    python tests/generation_worker.py '[{"eval": [overrides...]}, {"estep": [model_dir, out_dir, {fields}]}]'

runs each job in turn in one process (under torchrun: each job split across the processes), to
pay the start-up once: `run_eval` (what `mentalese eval` runs) and the BoLT E-step on
`estep_corpus()`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def eval_overrides(model_dir: Path, out_dir: Path, *extra: str) -> list[str]:
    """`mentalese eval` overrides: 12 two-step chain problems in shards of 2, short decodes, on CPU."""
    return [f"model={model_dir}", "benchmark=chain", "task_options={num_steps: 2, num_examples: 12}",
            f"output_dir={out_dir}", "shard_size=2", "decode.max_new_tokens=24", "decode.batch_size=4",
            "dtype=float32", "device=cpu", *extra]


def build_think_model(out_dir: Path) -> Path:
    """A tiny random GPT-2 whose character tokenizer has <think> and </think> (soft thinking needs the latter)."""
    from mentalese.models.tiny import build_tiny_model, char_tokenizer

    tok = char_tokenizer(extra_tokens=["<think>", "</think>"])
    return build_tiny_model("gpt2", tok, out_dir, initializer_range=0.3, n_positions=128)


def build_bolt_model(out_dir: Path) -> Path:
    """A tiny random GPT-2 with the four BoLT tokens added and saved (so every process loads the same one)."""
    import torch

    from mentalese.methods.bolt.data_format import add_bolt_tokens
    from mentalese.models.loading import load_model_and_tokenizer
    from mentalese.models.tiny import build_tiny_model, char_tokenizer

    base = build_tiny_model("gpt2", char_tokenizer(), out_dir / "base", n_positions=128)
    model, tok = load_model_and_tokenizer(base, dtype="float32", device="cpu")
    torch.manual_seed(0)
    eol = add_bolt_tokens(model, tok).eol
    with torch.no_grad():  # make <|eol|> likely, so that proposals close and get scored
        v = torch.randn(model.config.n_embd)
        model.transformer.ln_f.bias.copy_(v)
        model.get_output_embeddings().weight[eol] = v * (4.0 / v.dot(v))
    model.save_pretrained(out_dir / "bolt")
    tok.save_pretrained(out_dir / "bolt")
    return out_dir / "bolt"


def estep_corpus(num_docs: int = 5):
    """`num_docs` documents of three one-sentence chunks each."""
    from mentalese.methods.bolt.data_format import chunk_document

    texts = [f"Doc {d} says {d}+1 is {d + 1}. Then it ends. Really ends now." for d in range(num_docs)]
    return [chunk_document(f"d{d}", t, mean=0, cap=1) for d, t in enumerate(texts)]


def run_estep_here(model_dir: Path, out_dir: Path, fields: dict, processes="auto", after_shard=None) -> dict:
    from mentalese.methods.bolt.data_format import BoltTokenIds
    from mentalese.methods.bolt.estep import EStepConfig, run_estep
    from mentalese.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(model_dir, dtype="float32", device="cpu")
    return run_estep(model, tok, estep_corpus(), out_dir, EStepConfig(**fields), BoltTokenIds.from_tokenizer(tok),
                     after_shard=after_shard, processes=processes)


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def torchrun(nproc: int, *args: str) -> list[str]:
    return [PYTHON, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]


def run_checked(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    from mentalese.config import load_config
    from mentalese.evaluation.harness import EvalConfig
    from mentalese.evaluation.run import run_eval

    for job in json.loads(argv[0]):
        if "eval" in job:
            run_eval(load_config(EvalConfig, None, job["eval"]), progress=False)
        else:
            model_dir, out_dir, fields = job["estep"]
            run_estep_here(Path(model_dir), Path(out_dir), fields)


if __name__ == "__main__":
    main(sys.argv[1:])
