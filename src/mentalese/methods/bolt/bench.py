"""`mentalese bolt-bench`: E-step cost = teacher-forced scoring time / sampling time, same proposals.

Samples K proposals per chunk of the toy corpus with `LogProbSampler` (the E-step's sampler), then
scores every proposal with `sequence_logprobs` (log p(<|prior|> Z EOL X | prefix SOL)); both are
timed after a warm-up. A random model rarely closes its latent, so every proposal is scored here
(the E-step scores only closed ones). Goal: ratio <= 0.25.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mentalese.config import config_to_dict
from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.decoding.scoring import sequence_logprobs
from mentalese.atomic_files import write_text_atomic
from mentalese.methods.bolt.data_format import add_bolt_tokens, chunk_corpus
from mentalese.methods.bolt.estep import EStepConfig, LogProbSampler, chunk_prompts, proposal_rows
from mentalese.methods.bolt.toy import ToyCorpusConfig, toy_documents
from mentalese.models.loading import load_model_and_tokenizer, resolve_device
from mentalese.models.tiny import build_tiny_model, char_tokenizer, tiny_size_overrides


@dataclass
class EStepBenchConfig:
    arch: str = field(default="gpt2", metadata={"help": "tiny architecture"})
    width: int = field(default=128, metadata={"help": "hidden size"})
    layers: int = field(default=2, metadata={"help": "layers"})
    documents: int = field(default=32, metadata={"help": "toy documents (4 chunks each)"})
    num_samples: int = field(default=4, metadata={"help": "K"})
    max_thought_tokens: int = field(default=64, metadata={"help": "proposal length"})
    batch_size: int = field(default=128, metadata={"help": "sampling batch"})
    score_batch_size: int = field(default=128, metadata={"help": "scoring batch"})
    device: str = field(default="auto", metadata={"help": "cpu / cuda / auto"})
    output: str = field(default="runs/bench/bolt_estep.json", metadata={"help": "JSON output"})


def run_estep_bench(cfg: EStepBenchConfig) -> dict:
    device = resolve_device(cfg.device)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = tiny_size_overrides(cfg.arch, cfg.width, cfg.layers)
        path = build_tiny_model(cfg.arch, char_tokenizer(), tmp, **overrides)
        model, tok = load_model_and_tokenizer(path, dtype="float32", device=str(device))
    ids = add_bolt_tokens(model, tok)
    docs, _ = chunk_corpus(toy_documents(ToyCorpusConfig(documents=cfg.documents)), 0, 1)
    ecfg = EStepConfig(num_samples=cfg.num_samples, max_thought_tokens=cfg.max_thought_tokens)
    prompts, _ = chunk_prompts(tok, docs, ecfg, None)
    rows = proposal_rows(prompts, ids, ecfg)
    dcfg = DecodeConfig(do_sample=True, max_new_tokens=cfg.max_thought_tokens, batch_size=cfg.batch_size,
                        stop_token_ids=[ids.eol])

    def sample():
        return decode(model, tok, rows, dcfg, strategy=LogProbSampler())

    def score(results):
        k = cfg.num_samples
        ctx = [prompts[i // k].prefix + [ids.sol] for i in range(len(results))]
        tgt = [[ids.prior, *r.token_ids, ids.eol, *prompts[i // k].x] for i, r in enumerate(results)]
        return sequence_logprobs(model, ctx, tgt, cfg.score_batch_size, tok.pad_token_id)

    sample()  # warm-up
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    results = sample()
    sync()
    t_sample = time.perf_counter() - t0
    score(results[:8])  # warm-up
    t0 = time.perf_counter()
    score(results)
    sync()
    t_score = time.perf_counter() - t0
    report = {"config": config_to_dict(cfg), "device": str(device), "machine": platform.processor() or platform.machine(),
              "proposals": len(results), "sampled_tokens": sum(r.num_tokens for r in results),
              "sampling_seconds": t_sample, "scoring_seconds": t_score, "scoring_over_sampling": t_score / t_sample,
              "goal": 0.25, "meets_goal": t_score / t_sample <= 0.25}
    write_text_atomic(Path(cfg.output), json.dumps(report, indent=2))
    return report
