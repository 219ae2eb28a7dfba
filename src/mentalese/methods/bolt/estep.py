"""BoLT's E-step: K thoughts per chunk from the model's own posterior, importance-weighted.

Per chunk X_i (prefix P = up to `prefix_chunks` previous raw chunks, BOS when it reaches the
document start):
  1. sample Z_1..Z_K ~ q(Z | X): prompt P SOL EOL X SOL <|posterior|>, temperature 1, no
     truncation, stop at EOL (included in Z's log-prob), at most `max_thought_tokens`;
  2. log q = sum of the sampled tokens' log-probs, recorded by `LogProbSampler` during sampling;
  3. log p = teacher-forced log-prob of <|prior|> Z EOL X after P SOL (`sequence_logprobs`);
  4. log w = log p - log q; keep one Z by importance resampling (softmax of log w), best-of-K, or
     uniformly (the control that ignores the weights).
ELBO estimates for k = 1, 2, 4: log-mean-exp of the first k weights, averaged over chunks.

Output: shard-NNNNN.jsonl (one line per chunk), then shard-NNNNN.stats.json (its statistics and
the run fingerprint: the shard's commit mark), and manifest.json (fingerprint, every finished
shard's stats, at the end the summary); each written to a temporary name and renamed. A crash loses
at most the shard in flight of each process; a rerun with the same chunks and settings skips the
finished shards, another fingerprint is refused. Every shard is seeded by its index only, so a
resumed run, or one split across processes (torchrun; see `sharding.py`), equals an
uninterrupted single-process one, record for record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from mentalese.decoding.loop import DecodeConfig, context_length, decode
from mentalese.decoding.scoring import sequence_logprobs
from mentalese.decoding.sampling import SamplingConfig
from mentalese.decoding.strategies import InputStrategy, StepContext, StepDecision, refuse_unless_equal
from mentalese.errors import MentaleseError
from mentalese.atomic_files import write_text_atomic
from mentalese.sharding import Processes, claim_directory, plan_shards, resolve_processes
from mentalese.methods.bolt.data_format import BoltTokenIds, Chunk, encode, text_seed

log = logging.getLogger(__name__)
SELECTIONS = ("importance", "best", "uniform")
PROPOSALS = ("posterior", "prior")


# ---------------------------------------------------------------- the math (pure functions)

def log_weights(log_p: Sequence[float], log_q: Sequence[float]) -> list[float]:
    return [p - q for p, q in zip(log_p, log_q, strict=True)]


def selection_probabilities(log_w: Sequence[float], method: str) -> list[float]:
    """Probability of keeping each proposal; -inf weights (invalid proposals) get 0."""
    if method not in SELECTIONS:
        raise MentaleseError(f"selection must be one of {SELECTIONS}, got {method!r}")
    valid = [math.isfinite(w) for w in log_w]
    if not any(valid):
        raise MentaleseError("no valid proposal to select from")
    if method == "uniform":
        n = sum(valid)
        return [1.0 / n if v else 0.0 for v in valid]
    if method == "best":
        best = max((w, -i) for i, w in enumerate(log_w) if valid[i])
        return [1.0 if i == -best[1] else 0.0 for i in range(len(log_w))]
    w = torch.tensor([x if v else -math.inf for x, v in zip(log_w, valid)], dtype=torch.float64)
    return torch.softmax(w, dim=0).tolist()


def select_proposal(log_w: Sequence[float], method: str, rng: random.Random) -> int:
    probs = selection_probabilities(log_w, method)
    u, acc = rng.random(), 0.0
    for i, p in enumerate(probs):
        acc += p
        if u < acc:
            return i
    return max(i for i, p in enumerate(probs) if p > 0)  # rounding: u just below 1


def log_mean_exp(values: Sequence[float]) -> float:
    t = torch.tensor(list(values), dtype=torch.float64)
    return float(torch.logsumexp(t, dim=0) - math.log(len(values)))


def elbo_estimates(log_w_rows: Sequence[Sequence[float]], ks: Sequence[int] = (1, 2, 4)) -> dict[str, float | int]:
    """Mean over chunks of log-mean-exp of the first k weights (the k-sample bound on log p(X)).

    Every k is averaged over the SAME chunks: those whose first k_max proposals are all valid, k_max the
    largest k in `ks` that every row has proposals for (so the bound's growth with k is not confounded by
    different chunk sets). A k beyond the rows' proposals gives nan; `elbo_k{k}_chunks` says how many.
    """
    out: dict[str, float | int] = {}
    usable = [k for k in ks if log_w_rows and all(len(row) >= k for row in log_w_rows)]
    k_max = max(usable, default=0)
    common = [row for row in log_w_rows if k_max and all(map(math.isfinite, row[:k_max]))]
    for k in ks:
        vals = [log_mean_exp(row[:k]) for row in common] if k <= k_max else []
        out[f"elbo_k{k}"] = sum(vals) / len(vals) if vals else float("nan")
        out[f"elbo_k{k}_chunks"] = len(vals)
    return out


# ---------------------------------------------------------------- sampling with log q

class LogProbSampler(InputStrategy):
    """Ancestral sampling from softmax(logits) (temperature 1, no truncation); sums each row's log-probs.

    That is q by definition, so the decode config must say so: do_sample=true, other settings default."""

    ANCESTRAL = SamplingConfig(do_sample=True)

    def bind_sampling(self, sampling: SamplingConfig) -> None:
        refuse_unless_equal(sampling, self.ANCESTRAL, "LogProbSampler (BoLT's E-step proposal)",
                            "it samples at temperature 1 without truncation, as log q assumes; use decode.do_sample="
                            "true with temperature, top_k, top_p and min_p at their defaults")

    def start(self, prompt_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        self.total = torch.zeros(prompt_ids.shape[0], dtype=torch.float64, device=prompt_ids.device)

    def step(self, ctx: StepContext) -> StepDecision:
        logp = torch.log_softmax(ctx.logits, dim=-1)
        tokens = torch.multinomial(logp.exp(), 1, generator=ctx.generator).squeeze(1)
        picked = logp.gather(-1, tokens[:, None]).squeeze(1).double()
        self.total += torch.where(ctx.finished, torch.zeros_like(picked), picked)
        return StepDecision(tokens=tokens)

    def row_info(self, row: int) -> dict[str, float]:
        return {"logq": float(self.total[row])}


# ---------------------------------------------------------------- one shard

@dataclass
class EStepConfig:
    num_samples: int = field(default=4, metadata={"help": "K proposals per chunk (paper: 4)"})
    selection: str = field(default="importance", metadata={"help": "importance (paper) | best | uniform (control)"})
    proposal: str = field(default="posterior", metadata={"help": "posterior: q(Z|X) (paper) | prior: p(Z), "
                                                                  "weights = likelihood p(X|Z) (toy)"})
    prefix_chunks: int = field(default=3, metadata={"help": "previous raw chunks in the proposal prompt (paper: 3)"})
    max_thought_tokens: int = field(default=1024, metadata={"help": "proposal length cap (paper: 1024)"})
    shard_size: int = field(default=256, metadata={"help": "chunks per shard file"})
    batch_size: int = field(default=64, metadata={"help": "rows per sampling batch"})
    score_batch_size: int = field(default=32, metadata={"help": "rows per scoring batch"})
    seed: int = field(default=0, metadata={"help": "base seed (each shard adds its index)"})

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise MentaleseError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.proposal not in PROPOSALS:
            raise MentaleseError(f"estep.proposal must be one of {PROPOSALS}, got {self.proposal!r}")
        for name in ("num_samples", "max_thought_tokens", "shard_size", "batch_size", "score_batch_size"):
            if getattr(self, name) < 1:
                raise MentaleseError(f"estep.{name} must be >= 1, got {getattr(self, name)}")
        if self.prefix_chunks < 0:
            raise MentaleseError(f"estep.prefix_chunks must be >= 0, got {self.prefix_chunks}")


@dataclass
class ChunkPrompt:
    chunk: Chunk
    prefix: list[int]  # BOS? + previous raw chunks (left-trimmed to fit the context)
    x: list[int]


def chunk_prompts(tokenizer, documents: Sequence[Sequence[Chunk]], cfg: EStepConfig, ctx_len: int | None
                  ) -> tuple[list[ChunkPrompt], list[str]]:
    """Prompt pieces for every chunk, plus the ids of chunks too long for the context (skipped)."""
    prompts, too_long = [], []
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for doc in documents:
        raw = [encode(tokenizer, c.text) for c in doc]
        for c in doc:
            lo = max(0, c.index - cfg.prefix_chunks)
            prefix = (bos if lo == 0 else []) + [t for r in raw[lo:c.index] for t in r]
            if ctx_len is not None:
                room = ctx_len - cfg.max_thought_tokens - len(raw[c.index]) - 4
                if room < 0:
                    too_long.append(c.chunk_id)
                    continue
                prefix = prefix[len(prefix) - room:] if len(prefix) > room else prefix
            prompts.append(ChunkPrompt(c, prefix, raw[c.index]))
    return prompts, too_long


def proposal_rows(prompts: Sequence[ChunkPrompt], tok: BoltTokenIds, cfg: EStepConfig) -> list[list[int]]:
    """K sampling prompts per chunk: posterior order `P SOL EOL X SOL <|posterior|>`, or `P SOL <|prior|>`."""
    if cfg.proposal == "prior":
        return [p.prefix + [tok.sol, tok.prior] for p in prompts for _ in range(cfg.num_samples)]
    return [p.prefix + [tok.sol, tok.eol] + p.x + [tok.sol, tok.posterior] for p in prompts for _ in range(cfg.num_samples)]


def estep_shard(model, tokenizer, prompts: Sequence[ChunkPrompt], tok: BoltTokenIds, cfg: EStepConfig,
                shard_index: int) -> tuple[list[dict], dict]:
    """Propose, score, weight and select for one shard; returns (records, stats)."""
    K = cfg.num_samples
    rows = proposal_rows(prompts, tok, cfg)
    dcfg = DecodeConfig(do_sample=True, temperature=1.0, max_new_tokens=cfg.max_thought_tokens,
                        batch_size=cfg.batch_size, seed=cfg.seed * 1_000_003 + shard_index, stop_token_ids=[tok.eol])
    t0 = time.perf_counter()
    results = decode(model, tokenizer, rows, dcfg, strategy=LogProbSampler())
    t_sample = time.perf_counter() - t0
    closed = [r.stop_reason == "eos" and r.token_ids and r.token_ids[-1] == tok.eol for r in results]
    score_idx = [i for i, ok in enumerate(closed) if ok]
    contexts = [prompts[i // K].prefix + [tok.sol] for i in score_idx]
    targets = [[tok.prior, *results[i].token_ids, *prompts[i // K].x] for i in score_idx]  # Z EOL already in ids
    t0 = time.perf_counter()
    scores = sequence_logprobs(model, contexts, targets, cfg.score_batch_size, tokenizer.pad_token_id) if score_idx else []
    t_score = time.perf_counter() - t0
    log_p = [-math.inf] * len(results)
    for i, s in zip(score_idx, scores):
        log_p[i] = s
    records, no_closed = [], 0
    for j, p in enumerate(prompts):
        sl = slice(j * K, (j + 1) * K)
        lq = [r.info["logq"] for r in results[sl]]
        lw = [lp - q if math.isfinite(lp) else -math.inf for lp, q in zip(log_p[sl], lq)]
        texts = [tokenizer.decode(r.token_ids[:-1] if ok else r.token_ids) for r, ok in zip(results[sl], closed[sl])]
        if any(closed[sl]):
            pick = select_proposal(lw, cfg.selection, random.Random(text_seed(f"{cfg.seed}|{p.chunk.chunk_id}")))
            thought = texts[pick]
        else:
            pick, thought, no_closed = None, None, no_closed + 1
        records.append({"chunk_id": p.chunk.chunk_id, "thought": thought, "selected": pick, "proposals": texts,
                        "closed": closed[sl], "log_p": log_p[sl], "log_q": lq, "log_w": lw})
    stats = {"chunks": len(prompts), "proposals": len(results), "unclosed_proposals": len(results) - len(score_idx),
             "chunks_without_closed_proposal": no_closed, "sampling_seconds": t_sample, "scoring_seconds": t_score,
             "sampled_tokens": sum(r.num_tokens for r in results)}
    return records, stats


# ---------------------------------------------------------------- sharded, resumable run

def _fingerprint(prompts: Sequence[ChunkPrompt], cfg: EStepConfig) -> str:
    h = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    for p in prompts:
        h.update(f"{p.chunk.chunk_id}\x00{p.chunk.text}\x00".encode())
    return h.hexdigest()[:16]


def _json_safe(x):  # -inf is not JSON: written as null
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    return x


def run_estep(model, tokenizer, documents: Sequence[Sequence[Chunk]], out_dir: str | Path, cfg: EStepConfig,
              tok: BoltTokenIds, after_shard: Callable[[int], None] | None = None,
              processes: Processes | str | None = "auto") -> dict:
    """Run (or resume) the E-step over every chunk; returns the manifest (stats per shard, ELBO).

    `processes`: "auto" splits the shards over the launched process group (call it on every
    process); None runs every shard here.
    """
    procs = resolve_processes(processes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompts, too_long = chunk_prompts(tokenizer, documents, cfg, context_length(model))
    if too_long and procs.is_main:
        log.warning("E-step: %d chunks do not fit the context with %d thought tokens; they stay raw",
                    len(too_long), cfg.max_thought_tokens)
    fingerprint = _fingerprint(prompts, cfg)
    manifest_path = out / "manifest.json"
    num_shards = math.ceil(len(prompts) / cfg.shard_size)
    initial = {"num_chunks": len(prompts), "num_shards": num_shards, "skipped_too_long": too_long, "shards": {}}
    manifest, _ = claim_directory(manifest_path, fingerprint, initial, procs,
                                  f"{out} holds an E-step of other chunks or settings; use a fresh directory")
    earlier = dict(manifest["shards"])  # stats of shards finished before this call (older runs had no stats files)

    def shard_stats(s: int) -> dict | None:
        """The stats of a finished shard, None when it still has to be computed."""
        if not (out / f"shard-{s:05d}.jsonl").exists():
            return None
        try:
            stats = json.loads(_stats_path(out, s).read_text())
        except (OSError, ValueError):
            return earlier.get(str(s))
        return {k: v for k, v in stats.items() if k != "fingerprint"} if stats.get("fingerprint") == fingerprint else None

    known: dict[int, dict] = {}  # finished shards' stats, read once

    def write_manifest(extra: dict | None = None) -> None:
        for s in range(num_shards):
            if s not in known and (st := shard_stats(s)) is not None:
                known[s] = st
        manifest.update(shards={str(s): known[s] for s in sorted(known)}, **(extra or {}))
        write_text_atomic(manifest_path, json.dumps(_json_safe(manifest), indent=1))

    done, mine = plan_shards(num_shards, lambda s: shard_stats(s) is not None, procs)
    log.info("E-step: process %d/%d computes shards %s (%d of %d already done)",
             procs.rank, procs.world_size, mine, len(done), num_shards)
    for s in mine:
        name = f"shard-{s:05d}.jsonl"
        records, stats = estep_shard(model, tokenizer, prompts[s * cfg.shard_size:(s + 1) * cfg.shard_size], tok, cfg, s)
        write_text_atomic(out / name, "".join(json.dumps(_json_safe(r)) + "\n" for r in records))
        write_text_atomic(_stats_path(out, s), json.dumps({"fingerprint": fingerprint, "file": name, **stats}))
        if procs.is_main:
            write_manifest()
        log.info("E-step shard %d/%d: %s", s + 1, num_shards, stats)
        if after_shard is not None:
            after_shard(s)
    procs.barrier()
    if procs.is_main:
        write_manifest()
        write_manifest({"summary": summarise(read_estep(out), manifest)})
    procs.barrier()
    return manifest if procs.is_main else json.loads(manifest_path.read_text())


def _stats_path(out: Path, shard: int) -> Path:
    return out / f"shard-{shard:05d}.stats.json"


def read_estep(out_dir: str | Path) -> list[dict]:
    """All records of a finished E-step, checked complete and without duplicates."""
    out = Path(out_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    if len(manifest["shards"]) != manifest["num_shards"]:
        raise MentaleseError(f"E-step in {out} is incomplete ({len(manifest['shards'])}/{manifest['num_shards']} shards)")
    records = []
    for s in range(manifest["num_shards"]):
        with (out / manifest["shards"][str(s)]["file"]).open() as f:
            for line in f:
                r = json.loads(line)
                r["log_w"] = [-math.inf if w is None else w for w in r["log_w"]]
                records.append(r)
    ids = [r["chunk_id"] for r in records]
    if len(ids) != manifest["num_chunks"] or len(set(ids)) != len(ids):
        raise MentaleseError(f"E-step in {out}: {len(ids)} records for {manifest['num_chunks']} chunks")
    return records


def summarise(records: Sequence[dict], manifest: dict) -> dict:
    shards = manifest["shards"].values()
    t_sample = sum(s["sampling_seconds"] for s in shards)
    t_score = sum(s["scoring_seconds"] for s in shards)
    ks = [k for k in (1, 2, 4, 8) if records and k <= len(records[0]["log_w"])]
    return {**elbo_estimates([r["log_w"] for r in records], ks),
            "chunks": len(records), "skipped_too_long": len(manifest["skipped_too_long"]),
            "chunks_without_closed_proposal": sum(r["thought"] is None for r in records),
            "unclosed_proposals": sum(s["unclosed_proposals"] for s in shards),
            "sampling_seconds": t_sample, "scoring_seconds": t_score,
            "scoring_over_sampling": t_score / t_sample if t_sample else float("nan")}


def thoughts_from(records: Sequence[dict]) -> dict[str, str]:
    return {r["chunk_id"]: r["thought"] for r in records if r["thought"] is not None}
