"""`mentalese bench bolt-estep`: E-step cost = teacher-forced scoring time / sampling time, same proposals.

Samples K proposals per chunk of the toy corpus with `LogProbSampler` (the E-step's sampler), then
scores every proposal with `sequence_logprobs` (log p(<|prior|> Z EOL X | prefix SOL)); both are
timed by the one timer (warm-up, median of `repeats`). A random model rarely closes its latent, so
every proposal is scored here (the E-step scores only closed ones). Goal: ratio <= 0.25.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

from mentalese.commands.bench.record import environment, write_result
from mentalese.commands.bench.timer import time_call
from mentalese.config import config_to_dict
from mentalese.decoding.loop import DecodeConfig, decode
from mentalese.decoding.scoring import sequence_logprobs
from mentalese.methods.bolt.data_format import add_bolt_tokens, chunk_corpus
from mentalese.methods.bolt.estep import EStepConfig, LogProbSampler, chunk_prompts, proposal_rows
from mentalese.methods.bolt.toy import ToyCorpusConfig, toy_documents
from mentalese.models.loading import load_model_and_tokenizer, resolve_device
from mentalese.models.tiny import build_tiny_model, char_tokenizer, tiny_size_overrides


@dataclass
class BoltEStepBenchConfig:
    arch: str = field(default="gpt2", metadata={"help": "tiny architecture"})
    width: int = field(default=128, metadata={"help": "hidden size"})
    layers: int = field(default=2, metadata={"help": "layers"})
    documents: int = field(default=32, metadata={"help": "toy documents (4 chunks each)"})
    num_samples: int = field(default=4, metadata={"help": "proposals per chunk (K)"})
    max_thought_tokens: int = field(default=64, metadata={"help": "max tokens per proposal"})
    batch_size: int = field(default=128, metadata={"help": "sampling batch"})
    score_batch_size: int = field(default=128, metadata={"help": "scoring batch"})
    repeats: int = field(default=1, metadata={"help": "timed repeats after one warm-up (median reported)"})
    device: str = field(default="auto", metadata={"help": "cpu / cuda / auto"})
    output: str = field(default="runs/bench/bolt_estep.json", metadata={"help": "JSON output"})


def bench_bolt_estep(cfg: BoltEStepBenchConfig) -> dict:
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

    sampling = time_call(sample, device, cfg.repeats)
    results = sampling.result
    scoring = time_call(lambda: score(results), device, cfg.repeats)
    ratio = scoring.median_s / sampling.median_s
    return write_result(cfg.output, {
        "benchmark": "bolt_estep", "config": config_to_dict(cfg), "environment": environment(device),
        "proposals": len(results), "sampled_tokens": sum(r.num_tokens for r in results),
        "sampling_seconds": sampling.median_s, "scoring_seconds": scoring.median_s,
        "scoring_over_sampling": ratio, "goal": 0.25, "meets_goal": ratio <= 0.25})
