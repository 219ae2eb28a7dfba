"""The evaluation harness: any model, any registered benchmark, any decoding setting.

`evaluate(...)` decodes every example (`num_samples` times when sampling), extracts answers
strictly and flexibly, grades them with the benchmark's grader and writes, into `output_dir`:

    predictions.jsonl   one line per example, in example order: reference, every sample's text,
                        extractions, grades
    metrics.json        accuracy (strict and flexible), pass@k, maj@n, tokens, latency, throughput

Shards (see `sharding.py`): the examples are cut into fixed shards of `shard_size`; each shard is
decoded alone with seed `shard_seed(decode.seed, shard)` and graded, and, with an output_dir,
written to `parts/part-NNNNN.jsonl` atomically. So a killed run loses at most the shard in flight
of each process, a rerun with the same settings skips finished shards (another fingerprint is
refused), and processes launched together (torchrun) split the shards; per-example results do not
depend on the number of processes or on interruptions. After the merge the parts are deleted.
Up to `shard_size` examples is one shard, decoded exactly as before sharding existed; bigger runs
differ from unsharded ones in which rows share a sampling batch (and so in their samples).

Timing fields are summed over shards and processes: `wall_time_s` is decode time in
process-seconds, throughputs are per process. Every field but `RUN_SPECIFIC_KEYS` is reproducible.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from mentalese.atomic_files import write_text_atomic
from mentalese.decoding.loop import DecodeConfig, DecodeResult, decode
from mentalese.decoding.soft_thinking import SoftThinkingConfig
from mentalese.decoding.strategies import InputStrategy
from mentalese.errors import MentaleseError
from mentalese.evaluation.extraction import EXTRACTION_VERSION, extract
from mentalese.evaluation.grading import GRADER_VERSION, grade, load_math_verify
from mentalese.evaluation.metrics import majority_vote, mean_pass_at_k, normalise_number
from mentalese.sharding import (
    Processes, claim_directory, fingerprint, num_shards, plan_shards, read_json_line, resolve_processes,
    shard_seed, shard_slice,
)
from mentalese.tasks.example import Example
from mentalese.tasks.registry import BenchmarkSpec, render_prompt

log = logging.getLogger(__name__)
DEFAULT_SHARD_SIZE = 256
RUN_SPECIFIC_KEYS = ("latency_per_example_s", "wall_time_s", "throughput_examples_per_s", "throughput_tokens_per_s",
               "num_processes")


@dataclass
class EvalConfig:
    """`mentalese eval`: which model, which benchmark split, how to decode, where to write."""

    model: str = field(default="", metadata={"help": "hub name or local path of a causal LM"})
    benchmark: str = field(default="chain", metadata={"help": "registered benchmark name"})
    split: str | None = field(default=None, metadata={"help": "split; default: the benchmark's default"})
    limit: int | None = field(default=None, metadata={"help": "first N examples only"})
    data_dir: str | None = field(default=None, metadata={"help": "benchmark data directory"})
    task_options: dict = field(default_factory=dict, metadata={"help": "options for synthetic benchmarks"})
    prompt: str | None = field(default=None, metadata={"help": "prompt template with {question}; default: spec's"})
    num_samples: int = field(default=1, metadata={"help": "samples per example (pass@k, maj@n)"})
    dtype: str = field(default="auto", metadata={"help": "model dtype"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1, auto (several processes: cuda:LOCAL_RANK)"})
    output_dir: str = field(default="runs/eval", metadata={"help": "where predictions and metrics go"})
    shard_size: int = field(default=DEFAULT_SHARD_SIZE, metadata={
        "help": "examples per shard: the unit of resume and of work split across processes; changes samples"})
    decode: DecodeConfig = field(default_factory=DecodeConfig, metadata={"help": "decoding settings"})
    soft_thinking: SoftThinkingConfig | None = field(default=None, metadata={
        "help": "decode with soft thinking (vanilla/dirichlet/gumbel); see docs/soft_thinking.md"})
    strategy: str = field(default="auto", metadata={
        "help": "auto | token | soft_thinking | codi | coconut; auto: codi / coconut for a saved CODI / Coconut "
                "model (its continuous thoughts), soft_thinking when soft_thinking.* is set, else token (plain "
                "decoding)"})

    def __post_init__(self) -> None:
        from mentalese.evaluation.run import check_strategy_name

        check_strategy_name(self.strategy)
        if self.strategy == "soft_thinking" and self.soft_thinking is None:
            self.soft_thinking = SoftThinkingConfig()  # the papers' settings; other combinations: run.resolve_strategy
        if self.num_samples < 1:
            raise MentaleseError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.limit is not None and self.limit < 1:
            raise MentaleseError(f"limit must be >= 1, got {self.limit}")
        if self.shard_size < 1:
            raise MentaleseError(f"shard_size must be >= 1, got {self.shard_size}")


def grade_sample(res: DecodeResult, example: Example, spec: BenchmarkSpec) -> dict[str, Any]:
    strict = extract(res.text, spec.extraction, "strict")
    flexible = extract(res.text, spec.extraction, "flexible")
    return {
        "text": res.text,
        "pred_strict": strict,
        "pred_flexible": flexible,
        "correct_strict": grade(strict, example.answer, spec.grader),
        "correct_flexible": grade(flexible, example.answer, spec.grader),
        "num_tokens": res.num_tokens,
        "num_steps": res.num_steps,
        "stop_reason": res.stop_reason,
        "error": res.error,
        **({"info": res.info} if res.info else {}),
        **({"reason_strict": code_reason(strict, example.answer)} if spec.grader == "code" else {}),
    }


def code_reason(pred: str | None, ref: str) -> str:
    """Why the extracted program passed or failed its tests ("ok", "timeout", "exception: AssertionError", ...):
    the sandbox's verdict, already cached by the grade above."""
    from mentalese.evaluation.code_grading import cached_grade

    try:
        return cached_grade(pred, ref).reason
    except MentaleseError as e:
        return f"error: {e}"


def example_record(ex: Example, results: Sequence[DecodeResult], spec: BenchmarkSpec) -> dict[str, Any]:
    samples = [grade_sample(r, ex, spec) for r in results]
    record = {"id": ex.id, "question": ex.question, "answer": ex.answer, "samples": samples}
    if len(samples) > 1:
        norm = normalise_number if spec.grader == "numeric" else None
        voted = majority_vote([s["pred_strict"] for s in samples], normalise=norm)
        record.update(majority=voted, majority_correct=grade(voted, ex.answer, spec.grader))
    return record


@dataclass
class ShardResult:
    lines: list[str]  # one JSON record per example
    decode_seconds: float
    latency_sum: float  # sum of the samples' latency_s

    def header(self, shard: int, run_fingerprint: str) -> dict:
        return {"shard": shard, "fingerprint": run_fingerprint, "num_examples": len(self.lines),
                "decode_seconds": self.decode_seconds, "latency_sum": self.latency_sum}


def decode_shard(model, tokenizer, examples: Sequence[Example], spec: BenchmarkSpec, decode_config: DecodeConfig,
                 strategy: InputStrategy | None, num_samples: int, template: str, shard: int,
                 progress: bool = False) -> ShardResult:
    """Decode and grade one shard alone, seeded by its index."""
    prompts = [render_prompt(template, ex.question) for ex in examples for _ in range(num_samples)]
    config = replace(decode_config, seed=shard_seed(decode_config.seed, shard))
    start = time.perf_counter()
    results = decode(model, tokenizer, prompts, config, strategy, progress=progress)
    seconds = time.perf_counter() - start
    lines = [json.dumps(example_record(ex, results[i * num_samples:(i + 1) * num_samples], spec))
             for i, ex in enumerate(examples)]
    return ShardResult(lines, seconds, sum(r.latency_s for r in results))


def summarise(records: Sequence[dict], spec: BenchmarkSpec, num_samples: int, template: str,
              decode_seconds: float, latency_sum: float) -> dict[str, Any]:
    samples = [s for r in records for s in r["samples"]]
    n_total, total_tokens = len(samples), sum(s["num_tokens"] for s in samples)
    wall = max(decode_seconds, 1e-9)
    metrics: dict[str, Any] = {
        "benchmark": spec.name,
        "benchmark_version": spec.version,
        "extraction": spec.extraction,
        "extraction_version": EXTRACTION_VERSION,
        "grader": spec.grader,
        "grader_version": GRADER_VERSION,
        "num_examples": len(records),
        "num_samples": num_samples,
        "accuracy": sum(s["correct_strict"] for s in samples) / n_total,
        "accuracy_flexible": sum(s["correct_flexible"] for s in samples) / n_total,
        "mean_generated_tokens": total_tokens / n_total,
        "mean_decode_steps": sum(s["num_steps"] for s in samples) / n_total,
        "latency_per_example_s": latency_sum / n_total,
        "wall_time_s": decode_seconds,
        "throughput_examples_per_s": n_total / wall,
        "throughput_tokens_per_s": total_tokens / wall,
        "num_errors": sum(s["error"] is not None for s in samples),
        "num_truncated": sum(s["stop_reason"] == "length" for s in samples),
        "prompt": template,
    }
    if num_samples > 1:
        correct_counts = [sum(s["correct_strict"] for s in r["samples"]) for r in records]
        k = 1
        while k <= num_samples:
            metrics[f"pass@{k}"] = mean_pass_at_k(correct_counts, num_samples, k)
            k *= 2
        metrics[f"maj@{num_samples}"] = sum(r["majority_correct"] for r in records) / len(records)
    return metrics


def describe_strategy(strategy: InputStrategy | None) -> list | None:
    """Class and settings (dataclass and scalar attributes) of a strategy, for the run fingerprint."""
    if strategy is None:
        return None
    settings = {k: repr(v) for k, v in sorted(vars(strategy).items())
                if is_dataclass(v) or isinstance(v, (int, float, str, bool, type(None)))}
    return [f"{type(strategy).__module__}.{type(strategy).__qualname__}", settings]


def eval_fingerprint(model, examples, spec, decode_config, strategy, num_samples, template, shard_size, run_key) -> str:
    """Everything an evaluation's outputs depend on that can be read cheaply. The model counts by its
    config, dtype and size (and whatever the caller puts in `run_key`), not by its weights."""
    config = getattr(model, "config", None)
    return fingerprint({
        "examples": [[ex.id, ex.question, ex.answer] for ex in examples],
        "benchmark": [spec.name, spec.version, spec.extraction, spec.grader, EXTRACTION_VERSION, GRADER_VERSION],
        "prompt": template, "decode": asdict(decode_config), "num_samples": num_samples, "shard_size": shard_size,
        "strategy": describe_strategy(strategy),
        "model": [config.to_json_string() if config is not None else None, str(getattr(model, "dtype", None)),
                  sum(p.numel() for p in model.parameters())],
        "run_key": run_key,
    })


def evaluate(
    model,
    tokenizer,
    examples: Sequence[Example],
    spec: BenchmarkSpec,
    decode_config: DecodeConfig | None = None,
    strategy: InputStrategy | None = None,
    num_samples: int = 1,
    prompt: str | None = None,
    output_dir: str | Path | None = None,
    progress: bool = False,
    shard_size: int = DEFAULT_SHARD_SIZE,
    processes: Processes | str | None = "auto",
    extra_metrics: dict[str, Any] | None = None,
    run_key: Any = None,
) -> dict[str, Any]:
    """Decode, grade and summarise; returns the metrics dict (also written when output_dir is set).

    With an output_dir the run is sharded on disk, resumable and split across `processes` ("auto":
    the launched process group; call it on every process). Without one, this process decodes every
    shard in memory. `extra_metrics` join the metrics; `run_key` joins the fingerprint.
    """
    if not examples:
        raise MentaleseError("no examples to evaluate")
    decode_config = decode_config or DecodeConfig()
    decode_config.validate()
    if num_samples > 1 and strategy is None and decode_config.greedy:
        raise MentaleseError("num_samples > 1 needs sampling (decode.do_sample=true, temperature > 0)")
    template = prompt or spec.prompt
    total = num_shards(len(examples), shard_size)
    if spec.grader == "math_verify":
        load_math_verify()  # the one-time import, outside every grading call's deadline

    def run_shard(s: int, show: bool) -> ShardResult:  # one shard: a bar over its batches, else over shards
        return decode_shard(model, tokenizer, examples[shard_slice(s, shard_size)], spec, decode_config, strategy,
                            num_samples, template, s, progress=show and total == 1)

    if output_dir is None:
        shards = [run_shard(s, progress) for s in _progress(range(total), progress and total > 1)]
        return _finish(shards, spec, num_samples, template, extra_metrics, num_processes=1)

    procs = resolve_processes(processes)
    out = Path(output_dir)
    parts = out / "parts"
    run_fp = eval_fingerprint(model, examples, spec, decode_config, strategy, num_samples, template, shard_size, run_key)
    _, resumed = claim_directory(
        parts / "run.json", run_fp, {"num_shards": total, "shard_size": shard_size, "num_examples": len(examples)},
        procs, f"{parts} holds a partial evaluation with other settings, data or model; delete it or use another output_dir")
    if procs.is_main and not resumed:  # a fresh run: final files of an earlier run would be stale
        for name in ("predictions.jsonl", "metrics.json"):
            (out / name).unlink(missing_ok=True)

    def part_path(s: int) -> Path:
        return parts / f"part-{s:05d}.jsonl"

    def is_done(s: int) -> bool:
        head = read_json_line(part_path(s))
        return head is not None and head.get("fingerprint") == run_fp and head.get("shard") == s

    done, mine = plan_shards(total, is_done, procs)
    log.log(logging.INFO if done or procs.world_size > 1 else logging.DEBUG,
            "evaluation: process %d/%d decodes shards %s (%d of %d shards already done)",
            procs.rank, procs.world_size, mine, len(done), total)
    for s in _progress(mine, progress and procs.is_main and total > 1):
        shard = run_shard(s, progress and procs.is_main)
        write_text_atomic(part_path(s), "".join(line + "\n" for line in [json.dumps(shard.header(s, run_fp)), *shard.lines]))
    procs.barrier()
    if procs.is_main:
        shards = [_read_part(part_path(s), run_fp, s) for s in range(total)]
        metrics = _finish(shards, spec, num_samples, template, extra_metrics, procs.world_size)
        write_text_atomic(out / "predictions.jsonl", "".join(line + "\n" for sh in shards for line in sh.lines))
        write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
        shutil.rmtree(parts, ignore_errors=True)
    procs.barrier()
    if not procs.is_main:
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return metrics


def _progress(items, show: bool):
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="eval shards", unit="shard")


def _read_part(path: Path, run_fp: str, shard: int) -> ShardResult:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        head = json.loads(lines[0])
    except (OSError, ValueError, IndexError):
        raise MentaleseError(f"evaluation part {path} is missing or unreadable; rerun to recompute it") from None
    if head.get("fingerprint") != run_fp or head.get("shard") != shard or head.get("num_examples") != len(lines) - 1:
        raise MentaleseError(f"evaluation part {path} belongs to another run or is incomplete; delete it and rerun")
    return ShardResult(lines[1:], head["decode_seconds"], head["latency_sum"])


def _finish(shards: Sequence[ShardResult], spec, num_samples, template, extra_metrics, num_processes) -> dict[str, Any]:
    records = [json.loads(line) for sh in shards for line in sh.lines]
    metrics = summarise(records, spec, num_samples, template, sum(sh.decode_seconds for sh in shards),
                        sum(sh.latency_sum for sh in shards))
    metrics.update(num_shards=len(shards), num_processes=num_processes, **(extra_metrics or {}))
    return metrics
